/// Events: what a transaction reports to the outside world, in its receipt.
module duet::event {
    /// Emits `message` as the transaction's next event; its type is the event's type.
    public fun emit<T: drop + store>(message: T) {
        write_to_event_store<T>(b"", 0, message);
    }

    native fun write_to_event_store<T: drop + store>(guid: vector<u8>, count: u64, message: T);
}
