//! Reading safetensors files from untrusted sources: the header checked so that parsing cannot
//! overflow or allocate by a lying length, every problem one line for the user.

use std::collections::HashMap;

use safetensors::{SafeTensorError, SafeTensors};

/// One line of text from an untrusted source, shortened.
pub fn one_line(s: impl ToString) -> String {
    let s: String = s.to_string().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().count() > 200 {
        s.chars().take(200).collect::<String>() + "..."
    } else {
        s
    }
}

fn describe(e: SafeTensorError, bytes: &[u8]) -> String {
    use SafeTensorError::*;
    let len = bytes.len();
    match e {
        HeaderTooSmall => format!("only {len} bytes: not a safetensors file (truncated?)"),
        HeaderTooLarge | InvalidHeaderLength => {
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
            format!("header length field {n} runs past the end of the file ({len} bytes): truncated or not a safetensors file")
        }
        MetadataIncompleteBuffer => "the tensor data does not fill the file as the header says (truncated?)".into(),
        InvalidHeader(_) | InvalidHeaderDeserialization(_) => format!("not a safetensors file ({})", one_line(e)),
        _ => format!("invalid safetensors file: {}", one_line(e)),
    }
}

/// Whether a tensor's data ends past the end of the file. safetensors 0.8 adds the last data offset
/// to the header length unchecked, which overflows (a panic with overflow checks) for huge offsets.
fn offsets_past_end(bytes: &[u8]) -> bool {
    let n = bytes.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let header = usize::try_from(n).ok().and_then(|n| bytes.get(8..n.checked_add(8)?)).unwrap_or_default();
    let Ok(map) = serde_json::from_slice::<HashMap<String, serde_json::Value>>(header) else { return false };
    map.values().filter_map(|v| v.get("data_offsets")?.get(1)?.as_u64()).any(|end| end > bytes.len() as u64)
}

/// The metadata strings of untrusted safetensors bytes (empty when there are none).
pub fn read_metadata(bytes: &[u8]) -> Result<HashMap<String, String>, String> {
    if offsets_past_end(bytes) {
        return Err("tensor data offsets run past the end of the file (truncated?)".into());
    }
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| describe(e, bytes))?;
    Ok(header.metadata().clone().unwrap_or_default())
}

/// The tensors and metadata of untrusted safetensors bytes.
pub fn open(bytes: &[u8]) -> Result<(SafeTensors<'_>, HashMap<String, String>), String> {
    let meta = read_metadata(bytes)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| describe(e, bytes))?;
    Ok((st, meta))
}
