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

/// `Layer` for `$layer<R>` building `$svc<S, R> { inner, layer }`, and `get_ref` / `get_mut` /
/// `into_inner` and a `Debug` that shows the wrapped service and the layer.
macro_rules! layer_with_rejection {
    ($layer:ident => $svc:ident) => {
        impl<S, R: Clone> tower_layer::Layer<S> for $layer<R> {
            type Service = $svc<S, R>;
            fn layer(&self, inner: S) -> Self::Service {
                $svc {
                    inner,
                    layer: self.clone(),
                }
            }
        }

        impl<S: std::fmt::Debug, R> std::fmt::Debug for $svc<S, R> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($svc))
                    .field("inner", &self.inner)
                    .field("layer", &self.layer)
                    .finish()
            }
        }

        crate::macros::define_inner_service_accessors!($svc<S, R>);
    };
}

pub(crate) use layer_with_rejection;
