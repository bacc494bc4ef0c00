//! Password and client-secret hashes in Spring `DelegatingPasswordEncoder` format.
