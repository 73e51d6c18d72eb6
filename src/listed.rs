//! `listed_enum!`: an enum and `ALL`, the array of its variants in declaration order, written
//! once, so that no variant can be left out of the list that parsing, figures, the benchmark and
//! the tests iterate (`MethodName`, `bench::Variant`, `bench::Shape`).

/// Defines the enum as written (attributes and doc comments kept; unit variants only) and
/// `impl Name { pub const ALL: [Name; N] }` holding every variant in declaration order.
macro_rules! listed_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order (made with the enum by `listed_enum!`, so none
            /// is missing).
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];
        }
    };
}
pub(crate) use listed_enum;
