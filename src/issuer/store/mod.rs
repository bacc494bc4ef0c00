//! Grant store: refresh-token families, revocations (memory, Redis).
