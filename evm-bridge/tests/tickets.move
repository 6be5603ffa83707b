/// A value Move code must hand back (`Ticket`, without abilities, a "hot potato"), and one it may
/// drop (`Stamp`): a function returning a `Ticket` cannot be called from outside Move, whose
/// caller would get its bytes and throw the value away.
module tickets::desk {
    use std::signer;

    struct Ticket { owner: address }

    struct Stamp has copy, drop { owner: address }

    struct Issued has key { count: u64 }

    /// A ticket, counted as issued: the caller must give it back.
    public fun take(account: &signer): Ticket acquires Issued {
        let owner = signer::address_of(account);
        if (!exists<Issued>(owner)) move_to(account, Issued { count: 0 });
        let issued = borrow_global_mut<Issued>(owner);
        issued.count = issued.count + 1;
        Ticket { owner }
    }

    public fun give_back(ticket: Ticket) {
        let Ticket { owner: _ } = ticket;
    }

    public fun stamp(account: &signer): Stamp {
        Stamp { owner: signer::address_of(account) }
    }
}
