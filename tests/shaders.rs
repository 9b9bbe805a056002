//! Every WGSL kernel family parses and validates with naga, with no GPU; and the registry is
//! consistent with the sources (every entry point exists, uses exactly its declared bindings).

use shadergan::shaders::{self, Slot, ENTRIES, FAMILIES};

fn parse_and_validate(family: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = shaders::source(family).expect("family registered");
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{family}.wgsl does not parse:\n{}", e.emit_to_string(&src)));
    // The f16 families need f16 (wgpu's SHADER_F16); the others must validate without it.
    let caps = if shaders::is_f16_family(family) {
        naga::valid::Capabilities::SHADER_FLOAT16
    } else {
        naga::valid::Capabilities::empty()
    };
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{family}.wgsl does not validate:\n{}", e.emit_to_string(&src)));
    (module, info)
}

#[test]
fn every_family_parses_and_validates() {
    for (family, _) in FAMILIES {
        parse_and_validate(family);
    }
}

#[test]
fn registry_matches_the_entry_points_and_their_bindings() {
    for (family, _) in FAMILIES {
        let (module, info) = parse_and_validate(family);
        // Every entry point in the source is registered, under this family.
        for (i, ep) in module.entry_points.iter().enumerate() {
            let (fam, slots) = shaders::entry(&ep.name)
                .unwrap_or_else(|| panic!("{family}.wgsl: entry point {} is not in shaders::ENTRIES", ep.name));
            assert_eq!(fam, *family, "{} registered under the wrong family", ep.name);
            // The bindings it statically uses are exactly the registered ones, with the same access.
            let ep_info = info.get_entry_point(i);
            let mut used = vec![];
            for (handle, var) in module.global_variables.iter() {
                if ep_info[handle].is_empty() {
                    continue;
                }
                let Some(binding) = &var.binding else { continue };
                let slot = match var.space {
                    naga::AddressSpace::Uniform => Slot::Uniform(binding.binding),
                    naga::AddressSpace::Storage { access } => {
                        if access.contains(naga::StorageAccess::STORE) {
                            Slot::ReadWrite(binding.binding)
                        } else {
                            Slot::Read(binding.binding)
                        }
                    }
                    _ => continue,
                };
                used.push(slot);
            }
            used.sort_by_key(|s| s.binding());
            let mut want = slots.to_vec();
            want.sort_by_key(|s| s.binding());
            assert_eq!(used, want, "{}: bindings used vs registered", ep.name);
            assert!(
                want.iter().filter(|s| !matches!(s, Slot::Uniform(_))).count() <= 4,
                "{}: more than 4 storage bindings",
                ep.name
            );
        }
    }
    // Every registered entry exists in its family.
    for (name, family, _) in ENTRIES {
        let (module, _) = parse_and_validate(family);
        assert!(module.entry_points.iter().any(|e| e.name == *name), "{name} missing from {family}.wgsl");
    }
}

#[test]
fn every_shader_file_has_a_header_comment() {
    for (family, src) in FAMILIES {
        assert!(src.starts_with(&format!("// {family}.wgsl:")), "{family}.wgsl needs a header comment");
        assert!(src.contains("Bindings"), "{family}.wgsl header must describe its bindings");
    }
}
