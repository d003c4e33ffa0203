//! Input rules, the decline rule, and the one mapping from domain errors to the wire.

use courier_actors::error::quote;
use courier_actors::ServiceError;
use courier_contracts::payments::{Charge, PaymentState};
use courier_store::StoreError;
use serde_json::json;

/// Everything that can go wrong in the payments domain.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    /// A field breaks a rule.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        reason: String,
    },
    /// No payment for that order id.
    #[error("no payment for order {0}")]
    NotFound(String),
    /// The simulated provider refused to answer this attempt (`payments.fail_first_attempts`);
    /// nothing was written, a retry may succeed.
    #[error("provider unavailable")]
    ProviderUnavailable,
    /// The database failed, or the deadline passed before the write committed (the kit's
    /// wire codes: 500, 504).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PaymentsError> for ServiceError {
    fn from(e: PaymentsError) -> Self {
        let message = e.to_string();
        match e {
            PaymentsError::Invalid { field, .. } => {
                ServiceError::bad_request(message).with_details(json!({ "field": field }))
            }
            PaymentsError::NotFound(order_id) => {
                ServiceError::not_found(message).with_details(json!({ "order_id": order_id }))
            }
            PaymentsError::ProviderUnavailable => ServiceError::unavailable(message),
            PaymentsError::Store(e) => e.into(),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PaymentsError {
    PaymentsError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks an id (`order_id`, `user_id`): not blank. Kept as sent: it is a key.
pub fn valid_id(field: &'static str, id: &str) -> Result<(), PaymentsError> {
    if id.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(())
}

/// Checks a charge: ids not blank, amount 1 or more, currency three upper-case letters.
pub fn valid_charge(charge: &Charge) -> Result<(), PaymentsError> {
    valid_id("order_id", &charge.order_id)?;
    valid_id("user_id", &charge.user_id)?;
    if charge.amount < 1 {
        return Err(invalid("amount", "must be 1 or more (minor units)"));
    }
    let currency = &charge.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        let reason = format!("{} is not an ISO 4217 code (EUR)", quote(currency));
        return Err(invalid("currency", reason));
    }
    Ok(())
}

/// The decline rule: declined, with the reason, when the user's `net` charged total plus
/// `amount` would exceed `limit`; else charged.
pub fn decide(net: i64, amount: i64, limit: i64) -> (PaymentState, Option<String>) {
    if net.saturating_add(amount) > limit {
        let reason = format!("over the user's limit: {net} charged, {amount} more exceeds {limit}");
        return (PaymentState::Declined, Some(reason));
    }
    (PaymentState::Charged, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(amount: i64, currency: &str) -> Charge {
        Charge {
            order_id: "o1".into(),
            user_id: "u1".into(),
            amount,
            currency: currency.into(),
        }
    }

    fn field(result: Result<(), PaymentsError>) -> &'static str {
        match result {
            Err(PaymentsError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_charge_needs_ids_a_positive_amount_and_a_currency_code() {
        assert!(valid_charge(&charge(1, "EUR")).is_ok());
        assert_eq!(field(valid_charge(&charge(0, "EUR"))), "amount");
        assert_eq!(field(valid_charge(&charge(-5, "EUR"))), "amount");
        for bad in ["eur", "EU", "EURO", "E1R", "", "ÉUR"] {
            assert_eq!(field(valid_charge(&charge(1, bad))), "currency", "{bad}");
        }
        let blank_order = Charge {
            order_id: " ".into(),
            ..charge(1, "EUR")
        };
        assert_eq!(field(valid_charge(&blank_order)), "order_id");
        let no_user = Charge {
            user_id: String::new(),
            ..charge(1, "EUR")
        };
        assert_eq!(field(valid_charge(&no_user)), "user_id");
    }

    #[test]
    fn a_charge_is_declined_only_past_the_limit() {
        assert_eq!(decide(0, 100, 100), (PaymentState::Charged, None));
        assert_eq!(decide(60, 40, 100).0, PaymentState::Charged);
        let (state, reason) = decide(60, 41, 100);
        assert_eq!(state, PaymentState::Declined);
        assert!(reason.unwrap().contains("limit"));
        assert_eq!(decide(i64::MAX, 1, 100).0, PaymentState::Declined);
    }

    #[test]
    fn each_error_has_its_wire_code() {
        let code = |e: PaymentsError| ServiceError::from(e).code;
        assert_eq!(code(invalid("amount", "x")), 400);
        assert_eq!(code(PaymentsError::NotFound("o".into())), 404);
        assert_eq!(code(PaymentsError::ProviderUnavailable), 503);
        assert_eq!(code(PaymentsError::from(StoreError::DeadlinePassed)), 504);
        assert_eq!(code(PaymentsError::from(StoreError::Duplicate)), 500);
    }
}
