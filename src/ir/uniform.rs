//! Uniform structs: each kernel family's parameters, mirrored field for field from its WGSL
//! (`#[repr(C)]`, padded to 16 bytes). The GPU launchers upload them and the CPU twins take the
//! very same structs, so both sides read one description of every call. `uniform!` declares a
//! struct together with its field table, which a test compares with the WGSL struct of the same
//! name through naga's reflection (names, order, offsets, size).

/// Name, size and (field, byte offset) list of a uniform struct.
#[derive(Clone, Copy, Debug)]
pub struct UniformInfo {
    pub name: &'static str,
    pub size: usize,
    pub fields: fn() -> Vec<(&'static str, usize)>,
}

/// A struct uploaded as a uniform, with the layout its WGSL twin must have.
pub trait UniformLayout {
    const INFO: UniformInfo;
}

/// Declares a uniform struct (`#[repr(C)]`, Pod, Default) and its [`UniformLayout`].
#[macro_export]
macro_rules! uniform {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable, PartialEq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty),*
        }

        impl $crate::ir::UniformLayout for $name {
            const INFO: $crate::ir::UniformInfo = $crate::ir::UniformInfo {
                name: stringify!($name),
                size: std::mem::size_of::<$name>(),
                fields: || vec![$((stringify!($field), std::mem::offset_of!($name, $field))),*],
            };
        }
    };
}
