//! Landlock: a second wall on file access and TCP, applied to the agent.
//!
//! The rules are built for the exact ABI the kernel reports, so that the
//! status is `FullyEnforced` or the layer is missing; nothing is silently
//! partial. Read and execute everywhere in the view (the mount view already
//! holds only what the spec grants); write only under the writable grants,
//! the private tmpfs directories and `/dev`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};

use crate::Layer;

/// What Landlock put in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) abi: Option<i32>,
    pub(crate) fs: bool,
    pub(crate) net: bool,
    pub(crate) scope: bool,
    /// Layers that could not be applied, with the reason.
    pub(crate) missing: Vec<(Layer, String)>,
}

/// What the agent may do.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) writable: Vec<PathBuf>,
    pub(crate) tcp_connect: Vec<u16>,
    pub(crate) tcp_bind: Vec<u16>,
}

/// Applies Landlock to the calling thread (and the programs it executes).
pub(crate) fn apply(rules: &Rules) -> Applied {
    let mut out = Applied::default();
    let kernel = match crate::sys::landlock_abi() {
        Ok(v) => v,
        Err(e) => {
            let why = match e {
                nix::errno::Errno::EOPNOTSUPP => "Landlock is built in but not enabled (add `landlock` to the lsm= boot parameter)".to_owned(),
                nix::errno::Errno::ENOSYS => "the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK)".to_owned(),
                other => format!("landlock_create_ruleset: {other}"),
            };
            for l in [Layer::Landlock, Layer::LandlockNet, Layer::LandlockScope] {
                out.missing.push((l, why.clone()));
            }
            return out;
        }
    };
    let abi = ABI::from(kernel);
    // The crate may know fewer versions than the kernel: build for what
    // both know, and report that number.
    let abi_num = abi_number(abi).min(kernel);
    out.abi = Some(abi_num);
    let net = abi_num >= 4;
    let scope = abi_num >= 6;
    if !net {
        out.missing.push((
            Layer::LandlockNet,
            format!("Landlock ABI {abi_num} has no TCP rules (needs 4, Linux 6.7)"),
        ));
    }
    if !scope {
        out.missing.push((
            Layer::LandlockScope,
            format!("Landlock ABI {abi_num} has no scopes (needs 6, Linux 6.12)"),
        ));
    }
    match restrict(abi, net, scope, rules) {
        Ok(RulesetStatus::FullyEnforced) => {
            out.fs = true;
            out.net = net;
            out.scope = scope;
        }
        Ok(other) => {
            let why = format!("the ruleset for ABI {abi_num} was only {other:?}");
            out.missing.push((Layer::Landlock, why));
        }
        Err(e) => out.missing.push((Layer::Landlock, e)),
    }
    out
}

fn abi_number(abi: ABI) -> i32 {
    match abi {
        ABI::Unsupported => 0,
        ABI::V1 => 1,
        ABI::V2 => 2,
        ABI::V3 => 3,
        ABI::V4 => 4,
        ABI::V5 => 5,
        ABI::V6 => 6,
        ABI::V7 => 7,
        ABI::V8 => 8,
        ABI::V9 => 9,
        ABI::V10 => 10,
        // A newer crate version knows more; build for what we reviewed.
        #[allow(unreachable_patterns)]
        _ => 10,
    }
}

fn restrict(abi: ABI, net: bool, scope: bool, rules: &Rules) -> Result<RulesetStatus, String> {
    let e = |what: &str, err: landlock::RulesetError| format!("{what}: {err}");
    let mut ruleset = landlock::Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|x| e("handle file access", x))?;
    if net {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|x| e("handle TCP access", x))?;
    }
    if scope {
        ruleset = ruleset
            .scope(Scope::from_all(abi))
            .map_err(|x| e("scopes", x))?;
    }
    let mut created = ruleset
        .create()
        .map_err(|x| e("create ruleset", x))?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(|x| e("read rule for /", x))?
        .add_rules(path_beneath_rules(&rules.writable, AccessFs::from_all(abi)))
        .map_err(|x| e("write rules", x))?;
    if net {
        for &p in &rules.tcp_connect {
            created = created
                .add_rule(NetPort::new(p, AccessNet::ConnectTcp))
                .map_err(|x| e("connect rule", x))?;
        }
        for &p in &rules.tcp_bind {
            created = created
                .add_rule(NetPort::new(p, AccessNet::BindTcp))
                .map_err(|x| e("bind rule", x))?;
        }
    }
    let status = created.restrict_self().map_err(|x| e("restrict_self", x))?;
    Ok(status.ruleset)
}
