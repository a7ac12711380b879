//! The time-series store (in progress): head, postings, redb tables, commit
//! thread, retention. The only module that touches redb.
