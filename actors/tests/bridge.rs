//! The bridge against a real nats-server: codecs, wire errors, crashes, backpressure,
//! deadlines, trace context, events and drain.

mod common;

use std::time::{Duration, Instant, SystemTime};

use async_nats::HeaderMap;
use bytes::Bytes;
use common::*;
use courier_actors::meta::{header, unix_millis};
use courier_actors::{CallError, Client, Meta};
use serde_json::{json, Value};

async fn raw(
    client: &async_nats::Client,
    subject: &str,
    headers: HeaderMap,
    payload: &'static [u8],
) -> async_nats::Message {
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(Bytes::from_static(payload))
        .timeout(Some(Duration::from_secs(5)));
    client
        .send_request(subject.to_owned(), request)
        .await
        .expect("a reply")
}

fn header_of<'a>(msg: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    msg.headers.as_ref()?.get(name).map(|v| v.as_str())
}

#[actix_rt::test]
async fn json_without_content_type_answers_json_and_echoes_the_request_id() {
    let t = start().await;
    let mut h = HeaderMap::new();
    h.insert(header::REQUEST_ID, "req-42");
    let reply = raw(&t.client, "calc.add", h, br#"{"a": 2, "b": 40}"#).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.payload).unwrap(),
        json!({"sum": 42})
    );
    assert_eq!(
        header_of(&reply, header::CONTENT_TYPE),
        Some("application/json")
    );
    assert_eq!(header_of(&reply, header::REQUEST_ID), Some("req-42"));
    assert_eq!(header_of(&reply, header::SERVICE_ERROR_CODE), None);
}

#[actix_rt::test]
async fn a_request_without_headers_gets_a_bare_json_reply() {
    let t = start().await;
    let reply = t
        .client
        .request("calc.add", Bytes::from_static(br#"{"a": 2, "b": 40}"#))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.payload).unwrap(),
        json!({"sum": 42})
    );
    assert!(reply.headers.is_none(), "{:?}", reply.headers);
    // An error still carries the NATS micro error headers.
    let reply = t
        .client
        .request("calc.add", Bytes::from_static(b"not json"))
        .await
        .unwrap();
    assert_eq!(header_of(&reply, header::SERVICE_ERROR_CODE), Some("400"));
}

#[actix_rt::test]
async fn msgpack_requests_get_msgpack_replies() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_secs(5));
    let sum: Sum = client
        .call("calc.add", &Add { a: 1, b: 2 }, &Meta::root())
        .await
        .unwrap();
    assert_eq!(sum, Sum { sum: 3 });

    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, "application/msgpack");
    let body = rmp_serde::to_vec_named(&Add { a: 5, b: 6 }).unwrap();
    let reply = t
        .client
        .send_request(
            "calc.add",
            async_nats::Request::new().headers(h).payload(body.into()),
        )
        .await
        .unwrap();
    assert_eq!(
        header_of(&reply, header::CONTENT_TYPE),
        Some("application/msgpack")
    );
    assert_eq!(
        rmp_serde::from_slice::<Sum>(&reply.payload).unwrap(),
        Sum { sum: 11 }
    );
}

#[actix_rt::test]
async fn every_error_code_travels_in_headers_and_body_in_both_codecs() {
    let t = start().await;
    for code in [400u16, 401, 404, 409, 422, 429, 500, 503, 504] {
        let body = format!(r#"{{"code": {code}}}"#).into_bytes().leak();
        let reply = raw(&t.client, "calc.fail", HeaderMap::new(), body).await;
        assert_eq!(
            header_of(&reply, header::SERVICE_ERROR_CODE),
            Some(code.to_string().as_str())
        );
        assert_eq!(
            header_of(&reply, header::SERVICE_ERROR),
            Some(format!("failed with {code} as asked").as_str())
        );
        let wire: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(
            wire,
            json!({"code": code, "message": format!("failed with {code} as asked"), "details": {"asked": code}})
        );

        let client = Client::new(t.client.clone(), Duration::from_secs(5));
        match client
            .call::<_, ()>("calc.fail", &Fail { code }, &Meta::root())
            .await
        {
            Err(CallError::Service { error, .. }) => {
                assert_eq!(error.code, code);
                assert_eq!(
                    error.details,
                    Some(json!({"asked": code})),
                    "details survive MessagePack"
                );
            }
            other => panic!("expected a service error {code}, got {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn garbage_and_invalid_payloads_are_400_naming_the_problem() {
    let t = start().await;
    let cases: [(&[u8], &str); 4] = [
        (b"\xff\xfe not json", "invalid request body"),
        (br#"{"a": 1}"#, "missing field `b`"),
        (br#"{"a": "one", "b": 2}"#, "a: invalid type"),
        (b"[1, 2, 3, 4]", "invalid request body"),
    ];
    for (payload, expect) in cases {
        let reply = raw(&t.client, "calc.add", HeaderMap::new(), payload).await;
        assert_eq!(
            header_of(&reply, header::SERVICE_ERROR_CODE),
            Some("400"),
            "{payload:?}"
        );
        let message = header_of(&reply, header::SERVICE_ERROR).unwrap();
        assert!(
            message.contains(expect),
            "{message:?} should contain {expect:?}"
        );
    }
    let reply = raw(
        &t.client,
        "calc.add",
        HeaderMap::new(),
        br#"{"a": "one", "b": 2}"#,
    )
    .await;
    let wire: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(wire["details"], json!({"field": "a"}));

    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, "text/xml");
    let reply = raw(&t.client, "calc.add", h, b"<a/>").await;
    assert_eq!(header_of(&reply, header::SERVICE_ERROR_CODE), Some("400"));
    assert!(header_of(&reply, header::SERVICE_ERROR)
        .unwrap()
        .contains("text/xml"));
}

#[actix_rt::test]
async fn a_panicking_handler_answers_500_at_once_and_the_actor_is_restarted() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_secs(5));
    for _ in 0..3 {
        let _: u64 = client
            .call("calc.count", &Count {}, &Meta::root())
            .await
            .unwrap();
    }
    let before: u64 = client
        .call("calc.count", &Count {}, &Meta::root())
        .await
        .unwrap();
    assert_eq!(before, 4);

    let started = Instant::now();
    let err = client
        .call::<_, ()>("calc.panic", &Panic {}, &Meta::root())
        .await
        .unwrap_err();
    assert_eq!(err.code(), 500, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered in {:?}, not by time-out",
        started.elapsed()
    );

    let after: u64 = client
        .call("calc.count", &Count {}, &Meta::root())
        .await
        .unwrap();
    assert_eq!(after, 1, "a fresh actor counts from one");
}

#[actix_rt::test]
async fn a_panicking_per_thread_actor_is_restarted_on_its_thread() {
    use courier_actors::{Endpoint, Service, Supervised};
    let t = start().await;
    let courier = Client::new(t.client.clone(), Duration::from_secs(5));
    let calc = Supervised::per_thread({
        let courier = courier.clone();
        move || Calc::new(courier.clone())
    });
    let settings = courier_config::ServiceSettings {
        workers: 1,
        ..Default::default()
    };
    let _running = Service::builder("percalc", "0.1.0")
        .endpoint(Endpoint::new::<Count>(
            "count",
            "percalc.count",
            calc.clone(),
        ))
        .endpoint(Endpoint::new::<Panic>("panic", "percalc.panic", calc))
        .build()
        .unwrap()
        .start(t.client.clone(), &settings, &prometheus::Registry::new())
        .await
        .unwrap();
    for expected in 1..=3u64 {
        let n: u64 = courier
            .call("percalc.count", &Count {}, &Meta::root())
            .await
            .unwrap();
        assert_eq!(n, expected, "one actor on the one worker thread");
    }
    let err = courier
        .call::<_, ()>("percalc.panic", &Panic {}, &Meta::root())
        .await
        .unwrap_err();
    assert_eq!(err.code(), 500, "{err}");
    let after: u64 = courier
        .call("percalc.count", &Count {}, &Meta::root())
        .await
        .unwrap();
    assert_eq!(after, 1, "a fresh actor on the same thread counts from one");
}

#[actix_rt::test]
async fn a_panicking_sync_actor_answers_500_and_its_thread_is_replaced() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_secs(5));
    // Two single-thread members; crash each of them, then both must still serve.
    for _ in 0..2 {
        let err = client
            .call::<_, u64>("calc.crunch", &Crunch { n: 0 }, &Meta::root())
            .await
            .unwrap_err();
        assert_eq!(err.code(), 500);
    }
    for _ in 0..4 {
        let v: u64 = client
            .call("calc.crunch", &Crunch { n: 3 }, &Meta::root())
            .await
            .unwrap();
        assert_eq!(v, 14);
    }
}

#[actix_rt::test]
async fn past_the_in_flight_limit_requests_get_fast_503s_and_the_rest_succeed() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_secs(10));
    let total = 24;
    let calls = (0..total).map(|_| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            let result = client
                .call::<_, u64>("calc.slow", &Slow { ms: 1500 }, &Meta::root())
                .await;
            (result, started.elapsed())
        }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|(r, _)| r.is_ok()).count();
    let refused: Vec<_> = results
        .iter()
        .filter(|(r, _)| r.as_ref().is_err_and(|e| e.code() == 503))
        .collect();
    assert_eq!(
        ok + refused.len(),
        total,
        "every request is answered: {results:?}"
    );
    assert!(ok >= SLOW_LIMIT, "the admitted ones succeed: {ok}");
    assert!(
        refused.len() >= total - 2 * SLOW_LIMIT,
        "most are refused: {}",
        refused.len()
    );
    for (_, took) in &refused {
        assert!(
            *took < Duration::from_millis(1000),
            "refused fast, not after the slow work: {took:?}"
        );
    }
    let stats = t.running.stats();
    let slow = stats.endpoints.iter().find(|e| e.name == "slow").unwrap();
    assert_eq!(slow.data.rejected as usize, refused.len());
    assert_eq!(slow.data.max_in_flight, SLOW_LIMIT);
}

#[actix_rt::test]
async fn the_refusal_carries_a_retry_hint() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_secs(10));
    let busy: Vec<_> = (0..SLOW_LIMIT)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call::<_, u64>("calc.slow", &Slow { ms: 800 }, &Meta::root())
                    .await
            })
        })
        .collect();
    courier_testkit::eventually(
        Duration::from_secs(5),
        "the slow endpoint to be full",
        || async { (t.running.in_flight() == SLOW_LIMIT).then_some(()) },
    )
    .await;
    let reply = raw(&t.client, "calc.slow", HeaderMap::new(), br#"{"ms": 1}"#).await;
    assert_eq!(header_of(&reply, header::SERVICE_ERROR_CODE), Some("503"));
    assert_eq!(header_of(&reply, header::RETRY_AFTER_MS), Some("100"));
    for b in busy {
        b.await.unwrap().unwrap();
    }
}

#[actix_rt::test]
async fn a_request_past_its_deadline_is_504_and_never_runs() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_secs(5));
    let count = |c: Client| async move {
        c.call::<_, u64>("calc.count", &Count {}, &Meta::root())
            .await
            .unwrap()
    };
    let before = count(client.clone()).await;
    let mut h = HeaderMap::new();
    let past = SystemTime::now() - Duration::from_secs(1);
    h.insert(header::DEADLINE, unix_millis(past).to_string().as_str());
    let reply = raw(&t.client, "calc.count", h, b"{}").await;
    assert_eq!(header_of(&reply, header::SERVICE_ERROR_CODE), Some("504"));
    assert_eq!(
        count(client).await,
        before + 1,
        "the expired request did not reach the actor"
    );
}

#[actix_rt::test]
async fn a_deadline_that_passes_during_the_work_answers_504_then() {
    let t = start().await;
    // The caller waits 5 s, but tells the service it has 200 ms: the 504 must come from the
    // service, at 200 ms, not from the caller's own time-out.
    slow_work_answers_504_at_200ms(&t.client, Duration::from_millis(2000)).await;
}

/// `Courier-Timeout-Ms: <ms>`.
fn time_left(ms: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::TIMEOUT_MS, ms);
    h
}

/// Asks `calc.slow` for 3 s of work with 200 ms left, and checks that the service answers 504
/// after those 200 ms and before `before`.
async fn slow_work_answers_504_at_200ms(client: &async_nats::Client, before: Duration) {
    let started = Instant::now();
    let reply = raw(client, "calc.slow", time_left("200"), br#"{"ms": 3000}"#).await;
    assert_eq!(header_of(&reply, header::SERVICE_ERROR_CODE), Some("504"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < before,
        "{took:?}"
    );
}

#[actix_rt::test]
async fn a_sooner_deadline_behind_a_later_one_answers_504_on_time() {
    let t = start().await;
    // The endpoint's one timer is set for the first request's deadline, 5 s away; the second
    // request's, 200 ms away, must set it sooner.
    let first = tokio::spawn({
        let client = t.client.clone();
        async move { raw(&client, "calc.slow", time_left("5000"), br#"{"ms": 1000}"#).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    slow_work_answers_504_at_200ms(&t.client, Duration::from_millis(900)).await;
    let first = first.await.unwrap();
    assert_eq!(
        header_of(&first, header::SERVICE_ERROR_CODE),
        None,
        "the first request, within its deadline, is answered"
    );
}

#[actix_rt::test]
async fn the_client_maps_no_responders_to_503_and_silence_to_504() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_millis(300));
    let err = client
        .call::<_, u64>("nobody.home", &Count {}, &Meta::root())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NoResponders { .. }), "{err:?}");
    assert_eq!(err.code(), 503);
    let _silent = t.client.subscribe("silent.subject").await.unwrap();
    t.client.flush().await.unwrap();
    let err = client
        .call::<_, u64>("silent.subject", &Count {}, &Meta::root())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::TimedOut { .. }), "{err:?}");
    assert_eq!(err.code(), 504);
}

#[actix_rt::test]
async fn trace_context_reaches_the_handler_and_its_events() {
    let t = start().await;
    let mut h = HeaderMap::new();
    h.insert(
        header::TRACEPARENT,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    h.insert(header::REQUEST_ID, "trace-me");
    let reply = raw(&t.client, "calc.trace", h, b"{}").await;
    let traced: Traced = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        traced,
        Traced {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            request_id: "trace-me".into()
        }
    );
    let events = t.events.0.clone();
    let (event, trace) =
        courier_testkit::eventually(Duration::from_secs(5), "the traced event", || {
            let events = events.clone();
            async move { events.lock().unwrap().first().cloned() }
        })
        .await;
    assert_eq!(event.request_id, "trace-me");
    assert_eq!(
        trace, "4bf92f3577b34da6a3ce929d0e0e4736",
        "the event carries the request's trace"
    );
}

#[actix_rt::test]
async fn requests_without_a_reply_subject_are_counted_and_the_service_keeps_serving() {
    let t = start().await;
    t.client
        .publish("calc.add", Bytes::from_static(br#"{"a":1,"b":1}"#))
        .await
        .unwrap();
    t.client.publish("$SRV.PING", Bytes::new()).await.unwrap();
    t.client
        .publish("$SRV.STATS.calc", Bytes::new())
        .await
        .unwrap();
    t.client.flush().await.unwrap();
    let reply = raw(&t.client, "$SRV.PING.calc", HeaderMap::new(), b"").await;
    let ping: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(ping["name"], "calc");
    let reply = raw(&t.client, "calc.add", HeaderMap::new(), br#"{"a":1,"b":1}"#).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.payload).unwrap(),
        json!({"sum": 2})
    );
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&t.registry.gather())
        .unwrap();
    assert!(
        text.contains("courier_messages_without_reply_total{service=\"calc\"} 3"),
        "{text}"
    );
}

#[actix_rt::test]
async fn drain_answers_every_request_in_flight_then_stops_taking_new_ones() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_secs(10));
    let in_flight: Vec<_> = (0..SLOW_LIMIT)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call::<_, u64>("calc.slow", &Slow { ms: 300 + i as u64 }, &Meta::root())
                    .await
            })
        })
        .collect();
    courier_testkit::eventually(Duration::from_secs(5), "requests in flight", || async {
        (t.running.in_flight() == SLOW_LIMIT).then_some(())
    })
    .await;
    let report = t.running.stop(Duration::from_secs(5)).await;
    assert_eq!(report.abandoned, 0);
    for (i, call) in in_flight.into_iter().enumerate() {
        assert_eq!(
            call.await.unwrap().unwrap(),
            300 + i as u64,
            "request {i} answered"
        );
    }
    let err = client
        .call::<_, u64>("calc.count", &Count {}, &Meta::root())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NoResponders { .. }), "{err:?}");
}

#[actix_rt::test]
async fn a_drain_past_its_grace_reports_what_it_abandoned() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_secs(10));
    let _slow = tokio::spawn(async move {
        client
            .call::<_, u64>("calc.slow", &Slow { ms: 5000 }, &Meta::root())
            .await
    });
    courier_testkit::eventually(Duration::from_secs(5), "a request in flight", || async {
        (t.running.in_flight() == 1).then_some(())
    })
    .await;
    let report = t.running.stop(Duration::from_millis(200)).await;
    assert_eq!(report.abandoned, 1);
    assert!(report.took < Duration::from_secs(2), "{:?}", report.took);
}

/// Answers with the identity of the actor that handled it.
#[derive(serde::Deserialize, serde::Serialize)]
struct Who {}
impl courier_actors::Call for Who {
    type Reply = u64;
    type Error = courier_actors::ServiceError;
}
struct Member(u64);
impl actix::Actor for Member {
    type Context = actix::Context<Self>;
}
impl actix::Handler<courier_actors::Request<Who>> for Member {
    type Result = Result<u64, courier_actors::ServiceError>;
    fn handle(
        &mut self,
        _: courier_actors::Request<Who>,
        _: &mut actix::Context<Self>,
    ) -> Self::Result {
        Ok(self.0)
    }
}

#[actix_rt::test]
async fn a_pool_on_arbiters_spreads_requests_over_its_actors() {
    use courier_actors::{Endpoint, Service, Supervised};
    let nats = courier_testkit::TestNats::start();
    let client = connect(&nats).await;
    let pool = Supervised::on_arbiters(3, || Member(rand_id()));
    assert_eq!(pool.size(), Some(3));
    let _running = Service::builder("pool", "1.0.0")
        .endpoint(Endpoint::new::<Who>("who", "pool.who", pool))
        .build()
        .unwrap()
        .start(
            client.clone(),
            &Default::default(),
            &prometheus::Registry::new(),
        )
        .await
        .unwrap();
    let courier = Client::new(client, Duration::from_secs(5));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..30 {
        seen.insert(
            courier
                .call::<_, u64>("pool.who", &Who {}, &Meta::root())
                .await
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 3, "round-robin over three actors: {seen:?}");
}

/// Answers with the name of the thread that handled it.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct Where {}
impl courier_actors::Call for Where {
    type Reply = String;
    type Error = courier_actors::ServiceError;
}
struct Here;
impl actix::Actor for Here {
    type Context = actix::Context<Self>;
}
impl actix::Handler<courier_actors::Request<Where>> for Here {
    type Result = Result<String, courier_actors::ServiceError>;
    fn handle(&mut self, _: courier_actors::Request<Where>, _: &mut Self::Context) -> Self::Result {
        Ok(format!("{:?}", std::thread::current().id()))
    }
}

#[actix_rt::test]
async fn two_workers_handle_requests_on_two_threads_with_an_actor_each() {
    use courier_actors::{Endpoint, Service, Supervised};
    let t = start().await;
    let starts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let here = Supervised::per_thread({
        let starts = starts.clone();
        move || {
            starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Here
        }
    });
    let settings = courier_config::ServiceSettings {
        workers: 2,
        ..Default::default()
    };
    let running = Service::builder("where", "0.1.0")
        .endpoint(Endpoint::new::<Where>("where", "where.am.i", here))
        .build()
        .unwrap()
        .start(t.client.clone(), &settings, &prometheus::Registry::new())
        .await
        .unwrap();
    let client = Client::new(t.client.clone(), Duration::from_secs(5));
    let meta = Meta::root();
    let threads: std::collections::HashSet<String> = futures::future::join_all(
        (0..64).map(|_| client.call::<_, String>("where.am.i", &Where {}, &meta)),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert_eq!(
        starts.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one actor per worker thread"
    );
    let report = running.stop(Duration::from_secs(1)).await;
    assert!(report.complete, "{report:?}");
}

/// Two workers, the second on connections of its own from `connect`: a `where.am.i`
/// endpoint and a `where.slow` one, on one actor per worker.
async fn start_where_on_own_connections<F>(
    client: &async_nats::Client,
    connect: impl Fn(usize) -> F + Send + Sync + 'static,
) -> Result<courier_actors::Running, courier_actors::Error>
where
    F: std::future::Future<Output = Result<courier_actors::Connections, async_nats::ConnectError>>
        + Send
        + 'static,
{
    use courier_actors::{Connections, Endpoint, Service, Supervised};
    let courier = Client::new(client.clone(), Duration::from_secs(5));
    let calc = Supervised::per_thread(move || Calc::new(courier.clone()));
    let settings = courier_config::ServiceSettings {
        workers: 2,
        ..Default::default()
    };
    Service::builder("where", "0.1.0")
        .endpoint(Endpoint::new::<Where>(
            "where",
            "where.am.i",
            Supervised::per_thread(|| Here),
        ))
        .endpoint(Endpoint::new::<Slow>("slow", "where.slow", calc))
        .build()
        .unwrap()
        .start(
            Connections::new(client.clone(), client.clone()).per_worker(connect),
            &settings,
            &prometheus::Registry::new(),
        )
        .await
}

#[actix_rt::test]
async fn a_further_worker_serves_over_connections_it_opened_on_its_own_thread() {
    use std::sync::atomic::Ordering::SeqCst;
    let nats = courier_testkit::TestNats::start();
    let client = connect(&nats).await;
    let opened = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let running = start_where_on_own_connections(&client, {
        let (url, opened) = (nats.url(), opened.clone());
        move |worker| {
            let (url, opened) = (url.clone(), opened.clone());
            async move {
                let thread = format!("{:?}", std::thread::current().id());
                opened.lock().unwrap().push((worker, thread));
                let main = async_nats::connect(&url).await?;
                let intake = async_nats::connect(&url).await?;
                Ok(courier_actors::Connections::new(main, intake))
            }
        }
    })
    .await
    .unwrap();
    let opened = opened.lock().unwrap().clone();
    let [(1, opened_on)] = opened.as_slice() else {
        panic!("one further worker, opened once: {opened:?}");
    };
    let [_, own] = running.connections() else {
        panic!(
            "worker 0's and 1's connections: {:?}",
            running.connections()
        );
    };
    let (intake, main) = (own.intake.statistics(), own.main.statistics());
    let (taken_before, answered_before) = (
        intake.in_messages.load(SeqCst),
        main.out_messages.load(SeqCst),
    );

    let courier = Client::new(client.clone(), Duration::from_secs(5));
    let meta = Meta::root();
    let threads: std::collections::HashSet<String> = futures::future::join_all(
        (0..64).map(|_| courier.call::<_, String>("where.am.i", &Where {}, &meta)),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert!(threads.contains(opened_on), "{opened_on} among {threads:?}");
    assert_ne!(opened_on, &format!("{:?}", std::thread::current().id()));
    let taken = intake.in_messages.load(SeqCst) - taken_before;
    let answered = main.out_messages.load(SeqCst) - answered_before;
    assert!(taken > 0 && taken < 64, "worker 1 took {taken} of 64");
    assert_eq!(
        answered, taken,
        "worker 1 answers what it takes, over its own main"
    );

    // The drain flushes worker 1's replies too (this failed when the workers stopped first).
    let taken_before = intake.in_messages.load(SeqCst);
    let in_flight: Vec<_> = (0..16u64)
        .map(|i| {
            let courier = courier.clone();
            tokio::spawn(async move {
                courier
                    .call::<_, u64>("where.slow", &Slow { ms: 300 + i }, &Meta::root())
                    .await
            })
        })
        .collect();
    courier_testkit::eventually(Duration::from_secs(5), "requests in flight", || async {
        (running.in_flight() == 16).then_some(())
    })
    .await;
    let slow_on_1 = intake.in_messages.load(SeqCst) - taken_before;
    assert!(
        slow_on_1 > 0 && slow_on_1 < 16,
        "worker 1 took {slow_on_1} of 16"
    );
    let report = running.stop(Duration::from_secs(5)).await;
    assert!(report.complete, "{report:?}");
    for (i, call) in in_flight.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), 300 + i as u64, "request {i}");
    }
}

#[actix_rt::test]
async fn a_worker_that_cannot_connect_fails_the_start_and_names_itself() {
    let nats = courier_testkit::TestNats::start();
    let client = connect(&nats).await;
    let nowhere = format!("nats://127.0.0.1:{}", courier_testkit::free_port());
    let error = start_where_on_own_connections(&client, move |_| {
        let nowhere = nowhere.clone();
        async move {
            let main = async_nats::connect(&nowhere).await?;
            Ok(courier_actors::Connections::new(main.clone(), main))
        }
    })
    .await
    .map(|_| ())
    .expect_err("worker 1 has no server");
    assert!(
        matches!(error, courier_actors::Error::Connect { worker: 1, .. }),
        "{error:?}"
    );
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[actix_rt::test]
async fn events_with_a_queue_group_reach_one_member_and_without_one_reach_all() {
    use actix::Actor;
    use courier_actors::{Service, Subscription};
    let nats = courier_testkit::TestNats::start();
    let client = connect(&nats).await;
    let (grouped, fanned) = (
        vec![Recorder::default(), Recorder::default()],
        vec![Recorder::default(), Recorder::default()],
    );
    let mut running = Vec::new();
    for (g, f) in grouped.iter().zip(&fanned) {
        let service = Service::builder("listener", "1.0.0")
            .subscription(
                Subscription::new::<Traced>("events.grouped", g.clone().start().recipient())
                    .queue_group("audit"),
            )
            .subscription(Subscription::new::<Traced>(
                "events.fanned",
                f.clone().start().recipient(),
            ))
            .build()
            .unwrap();
        running.push(
            service
                .start(
                    client.clone(),
                    &Default::default(),
                    &prometheus::Registry::new(),
                )
                .await
                .unwrap(),
        );
    }
    let courier = Client::new(client.clone(), Duration::from_secs(5));
    let event = Traced {
        trace_id: "t".into(),
        request_id: "r".into(),
    };
    for _ in 0..10 {
        courier
            .publish("events.grouped", &event, &Meta::root())
            .await
            .unwrap();
        courier
            .publish("events.fanned", &event, &Meta::root())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let count = |r: &[Recorder]| {
        r.iter()
            .map(|x| x.0.lock().unwrap().len())
            .collect::<Vec<_>>()
    };
    courier_testkit::eventually(Duration::from_secs(5), "all events delivered", || async {
        (count(&grouped).iter().sum::<usize>() == 10 && count(&fanned) == [10, 10]).then_some(())
    })
    .await;
    // Nothing more arrives later: the grouped events were not duplicated.
    for r in running {
        r.stop(Duration::from_secs(1)).await;
    }
    assert_eq!(
        count(&grouped).iter().sum::<usize>(),
        10,
        "each grouped event went to one member"
    );
}
