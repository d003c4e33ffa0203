//! The payments service on the wire: the contract types of `courier_contracts::payments`, each
//! served by a [`Payments`] method on the subject its type names. Internal only: no HTTP
//! route, so the gateway never exposes them. No events.
//!
//! | subject           | request      | reply     | errors                                   |
//! |-------------------|--------------|-----------|------------------------------------------|
//! | `payments.charge` | `Charge`     | `Payment` | 400 (field named), 503 provider unavailable |
//! | `payments.refund` | `Refund`     | `Payment` | 400                                      |
//! | `payments.get`    | `GetPayment` | `Payment` | 400, 404                                 |

use courier_actors::{Methods, Service, ServiceBuilder};
use courier_contracts::payments::{Charge, GetPayment, Refund};

use crate::Payments;

/// The service definition (`$SRV` name `payments`): every endpoint served by a [`Payments`]
/// method, one actor per worker thread.
pub fn service(payments: Payments) -> ServiceBuilder {
    let methods = Methods::per_thread(payments);
    Service::builder("payments", env!("CARGO_PKG_VERSION"))
        .description("Charges and refunds per order, against a simulated provider")
        .endpoint(methods.serve::<Charge, _, _, _>("charge", Payments::charge))
        .endpoint(methods.serve::<Refund, _, _, _>("refund", Payments::refund))
        .endpoint(
            methods.serve::<GetPayment, _, _, _>("get", |payments: Payments, req, _| {
                payments.get(req)
            }),
        )
}
