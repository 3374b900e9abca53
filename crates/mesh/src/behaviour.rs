//! The composed libp2p behaviour of an Xnode peer.

use std::time::Duration;

use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, allow_block_list, gossipsub, identify, kad, mdns, request_response};
use xnode_types::SecretKey;

use crate::codec::BytesCodec;
use crate::proto::{MAX_RPC_BYTES, MAX_SWIM_BYTES};
use crate::validation;
use crate::{MeshConfig, MeshError};

/// The longest any RPC waits inside libp2p; callers' own timeouts are shorter.
pub(crate) const RPC_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Connections being set up at once, per direction. A dial or accept beyond this is
/// refused until others finish. Outgoing room exceeds the cap on hearsay members
/// (`swim::admission::MAX_UNVERIFIED_MEMBERS`), whose dials may hang on addresses that
/// answer nothing, so they can never crowd out dials to real peers.
const MAX_PENDING_INCOMING: u32 = 64;
const MAX_PENDING_OUTGOING: u32 = 512;
/// Established connections in total, and per peer (a TCP and a QUIC connection, plus
/// room for a simultaneous dial from both sides).
const MAX_ESTABLISHED: u32 = 1024;
const MAX_ESTABLISHED_INCOMING: u32 = 768;
const MAX_ESTABLISHED_PER_PEER: u32 = 4;
/// Concurrent RPC streams per connection. Each one buffers only what it has received,
/// and the RPC layer serves at most 64 requests per peer and service anyway.
const MAX_RPC_STREAMS: usize = 128;
/// Concurrent SWIM streams per connection (probes, relays, push-pulls).
const MAX_SWIM_STREAMS: usize = 64;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // First, so a connection over the limits is refused before anything else sees it.
    pub limits: connection_limits::Behaviour,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub identify: identify::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub swim: request_response::Behaviour<BytesCodec>,
    pub rpc: request_response::Behaviour<BytesCodec>,
}

/// The protocol-version string peers exchange through Identify.
pub(crate) fn protocol_version(network: &str) -> String {
    format!("/xnode/{network}/1")
}

fn protocol(network: &str, name: &str) -> Result<StreamProtocol, MeshError> {
    StreamProtocol::try_from_owned(format!("/xnode/{network}/{name}/1"))
        .map_err(|e| MeshError::Config(format!("bad protocol name for network {network:?}: {e}")))
}

impl Behaviour {
    pub(crate) fn new(config: &MeshConfig, key: &SecretKey) -> Result<Self, MeshError> {
        let keypair = key.to_libp2p_keypair();
        let local_peer = keypair.public().to_peer_id();
        let network = &config.network;

        let identify = identify::Behaviour::new(
            identify::Config::new(protocol_version(network), keypair.public())
                // The agent string carries the protocol range (see `protocol`): peers
                // judge it on every connection.
                .with_agent_version(config.protocol.agent(xnode_types::SOFTWARE_VERSION))
                .with_push_listen_addr_updates(true)
                // Dial addresses come from the membership (see `driver::dial_addresses`),
                // not from identify's cache, so failure detection controls what is dialled.
                .with_cache_size(0),
        );

        let mut kad =
            kad::Behaviour::with_config(local_peer, kad::store::MemoryStore::new(local_peer), {
                let mut c = kad::Config::new(protocol(network, "kad")?);
                // The driver bootstraps Kademlia itself, and only once it has peers.
                c.set_periodic_bootstrap_interval(None);
                c
            });
        kad.set_mode(Some(kad::Mode::Server));

        let gossip_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(500))
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Forward a message only once this node judged it valid (see `validation`).
            .validate_messages()
            .max_transmit_size(1024 * 1024)
            .protocol_id_prefix(format!("/xnode/{network}/meshsub"))
            .build()
            .map_err(|e| MeshError::Config(format!("gossipsub: {e}")))?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(keypair),
            gossip_config,
        )
        .map_err(|e| MeshError::Config(format!("gossipsub: {e}")))?;
        gossipsub
            .with_peer_score(
                validation::peer_score_params(&[]),
                validation::peer_score_thresholds(),
            )
            .map_err(|e| MeshError::Config(format!("gossipsub scoring: {e}")))?;

        let mdns = if config.mdns {
            match mdns::tokio::Behaviour::new(mdns::Config::default(), local_peer) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS is unavailable on this host; continuing without it");
                    None
                }
            }
        } else {
            None
        };

        let swim = request_response::Behaviour::with_codec(
            BytesCodec::new(MAX_SWIM_BYTES, MAX_SWIM_BYTES),
            [(
                protocol(network, "swim")?,
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(5))
                .with_max_concurrent_streams(MAX_SWIM_STREAMS),
        );
        let rpc = request_response::Behaviour::with_codec(
            BytesCodec::new(MAX_RPC_BYTES, MAX_RPC_BYTES),
            [(
                protocol(network, "rpc")?,
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(RPC_REQUEST_TIMEOUT)
                .with_max_concurrent_streams(MAX_RPC_STREAMS),
        );

        let limits = connection_limits::Behaviour::new(
            ConnectionLimits::default()
                .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                .with_max_pending_outgoing(Some(MAX_PENDING_OUTGOING))
                .with_max_established(Some(MAX_ESTABLISHED))
                .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING))
                .with_max_established_per_peer(Some(MAX_ESTABLISHED_PER_PEER)),
        );

        Ok(Self {
            limits,
            blocked: Default::default(),
            identify,
            kad,
            gossipsub,
            mdns: mdns.into(),
            swim,
            rpc,
        })
    }
}
