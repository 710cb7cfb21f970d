//! What to try next, after the CA refused something the person can change:
//! a revocation signed with the other key, a reason the CA does not take,
//! a contact the CA wants or refuses.

use sturdy_acme::ProblemType;

use super::Command;

/// What the hint needs to know of the command that failed.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// For `revoke`: whether the request was signed with the certificate's
    /// key (`--with-cert-key`), and the `--reason` given.
    revoke: Option<(bool, String)>,
    /// Whether `--contact` was given.
    contact: Option<String>,
    /// `account update-contact`.
    updating_contact: bool,
}

impl Context {
    /// The context of `command`.
    pub fn of(command: &Command) -> Self {
        let common = command.common();
        let mut context = Self {
            contact: common.contact.clone(),
            ..Self::default()
        };
        match command {
            Command::Revoke(a) => context.revoke = Some((a.with_cert_key, a.reason.clone())),
            Command::Account(a) => {
                context.updating_contact =
                    matches!(a.action, super::manage::AccountAction::UpdateContact { .. });
            }
            _ => {}
        }
        context
    }
}

/// A line saying what to try, for an error the person can work around.
pub fn hint(context: &Context, e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let e = e.downcast_ref::<sturdy_acme::Error>()?;
    let problem = e.problem()?;
    let detail = problem.detail.as_deref().unwrap_or("").to_ascii_lowercase();
    if let Some((with_cert_key, reason)) = &context.revoke {
        match problem.kind {
            ProblemType::BadRevocationReason => {
                return Some(format!(
                    "the CA does not take --reason {reason}: try --reason unspecified, or one it \
                     lists (Let's Encrypt takes unspecified, key-compromise, superseded and \
                     cessation-of-operation)"
                ));
            }
            ProblemType::Unauthorized | ProblemType::Malformed if *with_cert_key => {
                return Some(
                    "the CA refused the revocation signed with the certificate's key: try again \
                     without --with-cert-key, signed by the account that ordered it (this store's \
                     account)"
                        .into(),
                );
            }
            ProblemType::Unauthorized => {
                return Some(
                    "the CA refused the revocation signed by this store's account: try again with \
                     --with-cert-key (signed with the certificate's own key, kept in the store, \
                     which proves control of the key whatever the account)"
                        .into(),
                );
            }
            _ => {}
        }
    }
    let about_contact = matches!(
        problem.kind,
        ProblemType::InvalidContact | ProblemType::UnsupportedContact
    ) || detail.contains("contact")
        || detail.contains("e-mail")
        || detail.contains("email");
    if about_contact {
        if context.updating_contact {
            return Some(
                "the CA refused the contact: give each --email as an e-mail address on a domain \
                 the CA accepts (it is sent as mailto:)"
                    .into(),
            );
        }
        return Some(match &context.contact {
            None => "the CA wants a contact for the account: add --contact you@example.com (an \
                     e-mail address; with --store, the account is registered with it on first use)"
                .into(),
            Some(given) => format!(
                "the CA refused --contact {given:?}: give an e-mail address on a domain the CA \
                 accepts"
            ),
        });
    }
    None
}
