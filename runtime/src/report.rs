//! The run summary `report.json`. Each pipeline step merges its own top-level fields into it, so
//! the steps stay independent and a re-run of one step updates only its part.
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// Merges the top-level keys of `fields` (a JSON object) into the report at `path`, creating it
/// if needed. Keys already present are replaced. The write is atomic.
pub fn merge(path: &Path, fields: Value) -> Result<()> {
    let Value::Object(fields) = fields else {
        bail!("report fields must be a JSON object");
    };
    let mut report = match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            _ => bail!(
                "{} is not a JSON object; delete it and re-run to start a fresh report",
                path.display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    report.extend(fields);
    let text = serde_json::to_string_pretty(&Value::Object(report))?;
    crate::fsutil::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_keeps_other_steps_fields() {
        let dir = std::env::temp_dir().join(format!("tinycnn-report-{}", std::process::id()));
        let path = dir.join("report.json");
        merge(
            &path,
            json!({"preset": "fashion", "float_test_accuracy": 0.9}),
        )
        .unwrap();
        merge(
            &path,
            json!({"int8_test_accuracy": 0.89, "preset": "fashion"}),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["float_test_accuracy"], json!(0.9));
        assert_eq!(v["int8_test_accuracy"], json!(0.89));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
