//! Every WGSL kernel family parses and validates with naga, with no GPU; the registry matches the
//! sources (every entry point exists and uses exactly its declared bindings); and every uniform
//! struct in Rust matches its WGSL struct field for field (names, order, offsets, size), through
//! naga's reflection.

use shadergan::ir::UniformInfo;
use shadergan::kernels::{self, Family, Slot, COMMON_UNIFORMS, FAMILIES};

fn parse_and_validate(f: &Family) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = kernels::source(f);
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{}.wgsl does not parse:\n{}", f.name, e.emit_to_string(&src)));
    // The f16 families need f16 (wgpu's SHADER_F16); the others must validate without it.
    let caps = if f.f16 { naga::valid::Capabilities::SHADER_FLOAT16 } else { naga::valid::Capabilities::empty() };
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}.wgsl does not validate:\n{}", f.name, e.emit_to_string(&src)));
    (module, info)
}

#[test]
fn every_family_parses_and_validates() {
    for f in FAMILIES {
        parse_and_validate(f);
    }
}

/// The slots an entry point statically uses, with their access.
fn used_slots(module: &naga::Module, info: &naga::valid::ModuleInfo, i: usize) -> Vec<Slot> {
    let ep_info = info.get_entry_point(i);
    let mut used = vec![];
    for (handle, var) in module.global_variables.iter() {
        if ep_info[handle].is_empty() {
            continue;
        }
        let Some(binding) = &var.binding else { continue };
        let slot = match var.space {
            naga::AddressSpace::Uniform => Slot::Uniform(binding.binding),
            naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                Slot::ReadWrite(binding.binding)
            }
            naga::AddressSpace::Storage { .. } => Slot::Read(binding.binding),
            _ => continue,
        };
        used.push(slot);
    }
    used.sort_by_key(|s| s.binding());
    used
}

#[test]
fn registry_matches_the_entry_points_and_their_bindings() {
    for f in FAMILIES {
        let (module, info) = parse_and_validate(f);
        // Every entry point in the source is registered, under this family.
        for (i, ep) in module.entry_points.iter().enumerate() {
            let (fam, e) = kernels::entry(&ep.name)
                .unwrap_or_else(|| panic!("{}.wgsl: entry point {} is not registered", f.name, ep.name));
            assert_eq!(fam.name, f.name, "{} registered under the wrong family", ep.name);
            let mut want = e.slots.to_vec();
            want.sort_by_key(|s| s.binding());
            assert_eq!(used_slots(&module, &info, i), want, "{}: bindings used vs registered", ep.name);
            let storage = want.iter().filter(|s| !matches!(s, Slot::Uniform(_))).count() as u32;
            let most = kernels::MAX_STORAGE_BINDINGS;
            assert!(storage <= most, "{}: more than {most} storage bindings (the device is asked for {most})", ep.name);
        }
        // Every registered entry exists in its family.
        for e in f.entries {
            assert!(module.entry_points.iter().any(|x| x.name == e.name), "{} missing from {}.wgsl", e.name, f.name);
        }
    }
    // Entry points are unique across families.
    let mut names: Vec<&str> = FAMILIES.iter().flat_map(|f| f.entries.iter().map(|e| e.name)).collect();
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "an entry point is registered twice");
}

#[test]
fn every_shader_file_has_a_header_comment() {
    for f in FAMILIES {
        assert!(f.wgsl.starts_with(&format!("// {}.wgsl:", f.name)), "{}.wgsl needs a header comment", f.name);
        assert!(f.wgsl.contains("Bindings"), "{}.wgsl header must describe its bindings", f.name);
    }
}

/// (name, offset) of each member and the size of the WGSL struct `name`, if the module has it.
fn wgsl_struct(module: &naga::Module, name: &str) -> Option<(Vec<(String, usize)>, usize)> {
    module.types.iter().find_map(|(_, ty)| match (&ty.name, &ty.inner) {
        (Some(n), naga::TypeInner::Struct { members, span }) if n == name => Some((
            members.iter().map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize)).collect(),
            *span as usize,
        )),
        _ => None,
    })
}

fn assert_same_layout(u: &UniformInfo, module: &naga::Module, file: &str) {
    let (members, size) = wgsl_struct(module, u.name).unwrap_or_else(|| panic!("{file}: no struct {}", u.name));
    let rust: Vec<(String, usize)> = (u.fields)().into_iter().map(|(n, o)| (n.to_string(), o)).collect();
    assert_eq!(rust, members, "{}: Rust fields (name, offset) vs {file}'s", u.name);
    assert_eq!(u.size, size, "{}: Rust size vs {file}'s", u.name);
}

#[test]
fn every_uniform_struct_matches_its_wgsl_struct() {
    for f in FAMILIES {
        let (module, _) = parse_and_validate(f);
        for u in f.uniforms.iter().chain(COMMON_UNIFORMS) {
            assert_same_layout(u, &module, &format!("{}.wgsl", f.name));
        }
        // And every struct the family binds as a uniform has its Rust twin registered.
        for (_, var) in module.global_variables.iter() {
            if var.space != naga::AddressSpace::Uniform {
                continue;
            }
            let name = module.types[var.ty].name.clone().unwrap_or_default();
            let known = f.uniforms.iter().chain(COMMON_UNIFORMS).any(|u| u.name == name);
            assert!(known, "{}.wgsl binds uniform struct {name}, which has no registered Rust twin", f.name);
        }
    }
}

#[test]
fn the_layout_check_catches_a_reordered_field() {
    // A WGSL struct whose fields are swapped must fail the comparison.
    let src = "struct EmaParams { beta: f32, len: u32, _pad0: u32, _pad1: u32, }\n\
               @group(0) @binding(0) var<uniform> p: EmaParams;\n\
               @compute @workgroup_size(1) fn main() { let x = p.len; }";
    let module = naga::front::wgsl::parse_str(src).unwrap();
    let u = <shadergan::kernels::ema::EmaParams as shadergan::ir::UniformLayout>::INFO;
    let r = std::panic::catch_unwind(|| assert_same_layout(&u, &module, "swapped.wgsl"));
    assert!(r.is_err(), "swapped fields went unnoticed");
}
