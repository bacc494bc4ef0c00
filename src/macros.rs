//! Crate-private macros.

/// `get_ref` / `get_mut` / `into_inner` for a service whose wrapped service is `inner`.
macro_rules! define_inner_service_accessors {
    ($ty:ident < S $(, $param:ident)* >) => {
        impl<S $(, $param)*> $ty<S $(, $param)*> {
            /// Gets a reference to the wrapped service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }
            /// Gets a mutable reference to the wrapped service.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }
            /// Consumes `self`, returning the wrapped service.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}

pub(crate) use define_inner_service_accessors;
