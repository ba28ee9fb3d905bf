//! A Garage cluster on loopback (docs/STORE.md §12.2): N storage nodes with
//! `replication_factor = 3`, each in a zone of its own, and a gateway node that stores
//! nothing and serves the S3 API the tests use, so every block a client reads comes from the
//! storage nodes over Garage's RPC. Every node has its own directory and ports and the same
//! RPC secret; the layout is applied from the gateway. Writes and metadata reads need a
//! quorum of two of the three copies, so the cluster serves with one storage node down: what
//! §12.2's test proves of a read.

use super::garage::{Garage, binary, random_hex};

/// The running nodes; dropping it kills them all.
pub struct GarageCluster {
    /// The node the clients talk to (no data of its own); it holds the key and bucket of
    /// [`Garage::start`].
    pub gateway: Garage,
    /// The storage nodes, to be stopped in the middle of a test.
    pub storage: Vec<Garage>,
}

impl GarageCluster {
    /// Starts a gateway and `nodes` (at least 3) storage servers that store every object
    /// three times, joins them, applies the layout and sets up the key and bucket; panics,
    /// quoting the gateway's log, if the cluster does not become healthy.
    pub fn start(nodes: usize) -> GarageCluster {
        assert!(nodes >= 3, "replication factor 3 needs 3 storage nodes");
        let began = std::time::Instant::now();
        let (bin, secret) = (binary(), random_hex(32));
        let mut gateway = Garage::up(bin.clone(), 3, &secret);
        let storage: Vec<Garage> = (0..nodes)
            .map(|_| Garage::up(bin.clone(), 3, &secret))
            .collect();
        for node in &storage {
            gateway.cli_ok(&["node", "connect", &node.node_address()]);
        }
        for (i, node) in storage.iter().enumerate() {
            let zone = format!("dc{}", i + 1);
            gateway.cli_ok(&["layout", "assign", "-z", &zone, "-c", "1G", &node.node_id()]);
        }
        let own = gateway.node_id();
        gateway.cli_ok(&["layout", "assign", "-z", "dc1", "--gateway", &own]);
        gateway.cli_ok(&["layout", "apply", "--version", "1"]);
        if let Err(e) = gateway.wait_until_up(&["health", "-q"]) {
            gateway.fail(&e);
        }
        gateway.set_up_access();
        eprintln!(
            "garage: {nodes} storage nodes (replication 3) up behind the gateway {} in {:.1} s",
            gateway.endpoint(),
            began.elapsed().as_secs_f64()
        );
        GarageCluster { gateway, storage }
    }
}
