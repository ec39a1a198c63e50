//! The hook's own arguments, as written in a config.json hook's `args` or a hooks.d file:
//! `tether hook [attach|detach] [--network N]... [-p SPEC]... [--ip IP]... [--mac MAC] [--alias A]...
//! [--name NAME]`. Flags take their value as the next word or after `=`.

use super::error::HookError;
use super::network_mode::NetworkMode;
use super::settings::{
    parse_ips, parse_mac, parse_name, parse_names, parse_ports, split_list, HookSettings,
};
use super::stage::Stage;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookArgs {
    pub stage: Option<Stage>,
    pub settings: HookSettings,
    pub help: bool,
}

impl HookArgs {
    pub fn parse(args: &[String]) -> Result<HookArgs, HookError> {
        let mut parsed = HookArgs::default();
        let mut networks: Vec<String> = Vec::new();
        let mut ports: Vec<String> = Vec::new();
        let mut ips: Vec<String> = Vec::new();
        let mut aliases: Vec<String> = Vec::new();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) if flag.starts_with('-') => (flag, Some(value.to_string())),
                _ => (word.as_str(), None),
            };
            let mut value = |flag: &str| -> Result<String, HookError> {
                inline
                    .clone()
                    .or_else(|| words.next().cloned())
                    .ok_or_else(|| HookError::Usage {
                        reason: format!("{flag} needs a value"),
                    })
            };
            match flag {
                "-h" | "--help" => parsed.help = true,
                "--network" | "--net" => networks.push(value(flag)?),
                "-p" | "--publish" => ports.push(value(flag)?),
                "--ip" => ips.push(value(flag)?),
                "--mac" => parsed.settings.mac = Some(parse_mac(&value(flag)?, "--mac")?),
                "--alias" => aliases.extend(parse_names(split_list(&value(flag)?), "--alias")?),
                "--name" => parsed.settings.name = Some(parse_name(value(flag)?, "--name")?),
                stage if parsed.stage.is_none() && Stage::parse(stage).is_some() => {
                    parsed.stage = Stage::parse(stage);
                }
                other => {
                    return Err(HookError::Usage {
                        reason: format!("unexpected argument `{other}`"),
                    })
                }
            }
        }
        if !networks.is_empty() {
            parsed.settings.networks =
                Some(NetworkMode::parse(networks.iter().map(String::as_str))?);
        }
        if !ports.is_empty() {
            let texts = ports.iter().flat_map(|p| split_list(p)).collect();
            parsed.settings.ports = Some(parse_ports(texts, "-p")?);
        }
        if !ips.is_empty() {
            let texts = ips.iter().flat_map(|ip| split_list(ip)).collect();
            parsed.settings.ips = Some(parse_ips(texts, "--ip")?);
        }
        if !aliases.is_empty() {
            parsed.settings.aliases = Some(aliases);
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<HookArgs, HookError> {
        HookArgs::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_arguments_say_nothing() {
        assert_eq!(parse(&[]).unwrap(), HookArgs::default());
    }

    #[test]
    fn stage_networks_ports_and_identity_are_read() {
        let args = parse(&[
            "attach",
            "--network",
            "front",
            "--network=back",
            "-p",
            "8080:80",
            "--publish=53:53/udp",
            "--ip",
            "10.88.0.5",
            "--mac",
            "02:00:00:00:00:05",
            "--alias",
            "a,b",
            "--name",
            "web",
        ])
        .unwrap();
        assert_eq!(args.stage, Some(Stage::Attach));
        let s = args.settings;
        assert_eq!(
            s.networks,
            Some(NetworkMode::Networks(vec!["front".into(), "back".into()]))
        );
        let ports = ["8080:80", "53:53/udp"]
            .map(|p| p.parse().unwrap())
            .to_vec();
        assert_eq!(s.ports, Some(ports));
        assert_eq!(s.ips, Some(vec!["10.88.0.5".parse().unwrap()]));
        assert_eq!(s.mac.unwrap().to_string(), "02:00:00:00:00:05");
        assert_eq!(s.aliases, Some(vec!["a".into(), "b".into()]));
        assert_eq!(s.name.as_deref(), Some("web"));
    }

    #[test]
    fn detach_and_help_are_recognised() {
        assert_eq!(parse(&["detach"]).unwrap().stage, Some(Stage::Detach));
        assert!(parse(&["--help"]).unwrap().help);
    }

    #[test]
    fn unknown_words_missing_values_and_a_second_stage_are_usage_errors() {
        for bad in [
            &["--bogus"][..],
            &["--network"],
            &["attach", "detach"],
            &["start"],
            &["--ip", "nope"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
