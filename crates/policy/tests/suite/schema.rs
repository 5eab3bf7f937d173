//! The JSON Schema is generated from the checker's own definition.

use serde_json::Value;

#[test]
fn schema_names_every_section_and_forbids_unknown_keys() {
    let s = blastwall_policy::json_schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(s["additionalProperties"], Value::Bool(false));
    let props = s["properties"].as_object().unwrap();
    for section in [
        "version",
        "project",
        "filesystem",
        "network",
        "credential",
        "exec",
        "approval",
        "audit",
        "limits",
        "sandbox",
        "env",
        "sql",
        "mcp",
        "test",
    ] {
        assert!(props.contains_key(section), "{section}");
    }
    assert_eq!(s["required"], serde_json::json!(["version"]));
    let rule = &props["network"]["properties"]["rule"]["items"];
    assert_eq!(rule["required"], serde_json::json!(["host", "verdict"]));
    assert_eq!(
        rule["properties"]["verdict"]["enum"],
        serde_json::json!(["allow", "ask", "deny"])
    );
}

#[test]
fn committed_schema_is_current() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/blastwall.schema.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        panic!(
            "{} is missing: `blastwall policy schema > docs/blastwall.schema.json`",
            path.display()
        );
    };
    let committed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        committed,
        blastwall_policy::json_schema(),
        "docs/blastwall.schema.json is stale: `blastwall policy schema > docs/blastwall.schema.json`"
    );
}
