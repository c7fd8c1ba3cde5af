//! The per-connection lines of `lab-net connect`.

use std::net::SocketAddr;

/// `<local ip:port> <remote ip:port> ok` or `<local|-> <remote> error <message>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientLine {
    /// The connection's own source address (`None` when lab-net could not tell, `-`).
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    /// `None` for `ok`, the message for `error`.
    pub error: Option<String>,
}

impl ClientLine {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Parses the output of one `lab-net connect` run.
pub fn parse_client_lines(text: &str) -> Result<Vec<ClientLine>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (Some(local), Some(remote), Some(outcome)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("lab-net: short line {line:?}"));
            };
            let local = match local {
                "-" => None,
                text => Some(
                    text.parse()
                        .map_err(|_| format!("lab-net: bad local address in {line:?}"))?,
                ),
            };
            let remote = remote
                .parse()
                .map_err(|_| format!("lab-net: bad remote address in {line:?}"))?;
            let error = match (outcome, parts.next()) {
                ("ok", None) => None,
                ("error", message) => Some(message.unwrap_or_default().to_owned()),
                _ => return Err(format!("lab-net: neither ok nor error: {line:?}")),
            };
            Ok(ClientLine {
                local,
                remote,
                error,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ok_and_error_lines() {
        let lines = parse_client_lines(
            "198.51.100.11:34410 172.31.0.10:80 ok\n\
             198.51.100.11:41000 172.31.0.31:80 error Connection refused (os error 111)\n\
             - 172.31.0.31:80 error Network is unreachable (os error 101)\n",
        )
        .unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].local, Some("198.51.100.11:34410".parse().unwrap()));
        assert!(lines[0].ok());
        assert_eq!(
            lines[1].error.as_deref(),
            Some("Connection refused (os error 111)")
        );
        assert_eq!(lines[2].local, None);
        assert!(parse_client_lines("1.2.3.4:5 6.7.8.9:10 maybe\n").is_err());
        assert!(parse_client_lines("garbage\n").is_err());
    }
}
