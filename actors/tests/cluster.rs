//! Durable events on a three-node JetStream cluster (real `nats-server` processes routed on
//! loopback): streams kept in three replicas.

use std::time::Duration;

use courier_actors::durable::ensure_streams;
use courier_config::EventsSettings;
use courier_testkit::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_on_a_fresh_cluster_all_get_the_replicated_streams() {
    let cluster = TestCluster::start();
    let settings = EventsSettings {
        replicas: 3,
        ..EventsSettings::default()
    };
    // Six instances, two per node, each asking for the streams at the same moment, as the
    // services of a system started at once do; with a short request time-out, as operators
    // set them.
    let mut clients = Vec::new();
    for instance in 0..6 {
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_secs(1)))
            .connect(cluster.url(instance % TestCluster::SIZE))
            .await
            .expect("connects");
        clients.push(client);
    }
    let started = futures::future::join_all(
        clients
            .iter()
            .map(|client| ensure_streams(client, &settings)),
    )
    .await;
    for (instance, result) in started.iter().enumerate() {
        assert!(result.is_ok(), "instance {instance}: {result:?}");
    }
    let js = async_nats::jetstream::new(clients[0].clone());
    for name in [&settings.stream, &settings.dead_letter_stream] {
        let mut stream = js.get_stream(name).await.expect("the stream exists");
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.num_replicas, 3, "{name}");
    }
}
