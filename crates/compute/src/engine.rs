//! The node's wasmtime engine: pooling allocator, epoch ticker, and a cache of
//! pre-instantiated modules keyed by content id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::ComputeError;
use crate::command::CmdState;
use crate::http::HttpState;

/// Bytes of each freed linear memory reset in place rather than decommitted (enough for
/// the memories of a small Rust component and its WASI adapter).
const KEEP_RESIDENT_MEMORY_BYTES: usize = 2 << 20;
/// The same for tables.
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;

/// Content id of a module: the BLAKE3 hash of its bytes.
pub type ModuleId = [u8; 32];

/// Engine-wide settings. Per-invocation limits live in [`crate::Limits`]; these cap them.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instances that may run at once on this node (pooling allocator slots).
    pub max_instances: u32,
    /// The largest linear memory any instance may have.
    pub max_memory_bytes: u64,
    /// WebAssembly stack per instance. Wasmtime sets it per engine, not per store.
    pub max_stack_bytes: usize,
    /// How often epochs advance; the granularity of time limits, of yielding, and of the
    /// turns long-running functions take on the CPU lanes.
    pub epoch_tick: Duration,
    /// Long-running functions that may compute at once (see `limits::Lane`); one less
    /// than the cores by default, so short calls always find a free core.
    pub cpu_lanes: usize,
    /// Compiled modules kept in memory.
    pub cached_modules: usize,
    /// Commands (jobs and workers, which hold their slot for as long as they run) that
    /// may run at once; the rest of `max_instances` stays free for functions.
    pub max_commands: u32,
    /// The largest body a function sends to `store.xnode`.
    pub max_outbound_body_bytes: u64,
    /// Which network addresses functions may reach.
    pub egress: crate::EgressPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_instances: 256,
            max_memory_bytes: 512 << 20,
            max_stack_bytes: 512 << 10,
            epoch_tick: Duration::from_millis(1),
            cpu_lanes: std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1),
            cached_modules: 64,
            max_commands: 64,
            max_outbound_body_bytes: 64 << 20,
            egress: crate::EgressPolicy::default(),
        }
    }
}

/// A compiled, pre-instantiated `wasi:http/proxy` component.
#[derive(Clone)]
pub struct HttpModule {
    pub id: ModuleId,
    pub(crate) pre: Arc<ProxyPre<HttpState>>,
}

/// A compiled, pre-linked WASI preview-1 command.
#[derive(Clone)]
pub struct CommandModule {
    pub id: ModuleId,
    pub(crate) pre: Arc<wasmtime::InstancePre<CmdState>>,
}

/// One per node. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

pub(crate) struct EngineInner {
    pub engine: wasmtime::Engine,
    pub config: EngineConfig,
    http_linker: ComponentLinker<HttpState>,
    cmd_linker: Linker<CmdState>,
    http_cache: Mutex<HashMap<ModuleId, HttpModule>>,
    cmd_cache: Mutex<HashMap<ModuleId, CommandModule>>,
    /// One permit per pooling slot, so a burst waits briefly instead of failing inside
    /// the allocator.
    pub slots: Arc<Semaphore>,
    /// Permits commands take before a slot, so they never hold every slot.
    pub commands: Arc<Semaphore>,
    /// CPU lanes for long-running functions.
    pub lanes: Arc<Semaphore>,
    /// When function calls that stayed short last finished.
    pub(crate) short_activity: Arc<crate::limits::ShortActivity>,
    stop_ticker: Arc<AtomicBool>,
    /// Guests running now; the epoch ticker sleeps while there are none, so an idle
    /// node (or a test process with dozens of nodes) pays nothing for a fine tick.
    running: Arc<AtomicUsize>,
    ticker: std::thread::Thread,
}

/// An instance slot held by a running guest (see [`Engine::slot`]).
pub(crate) struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        self.ticker.unpark();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Engine, ComputeError> {
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component instantiates a handful of core modules (the program
        // and the WASI adapter pieces); leave room for that in every slot.
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 8)
            .total_memories(config.max_instances * 2)
            .total_tables(config.max_instances * 8)
            .total_stacks(config.max_instances)
            .max_memories_per_component(4)
            .max_core_instances_per_component(32)
            .max_memory_size(config.max_memory_bytes as usize)
            // Reset the first pages of a freed slot with memset instead of madvise: an
            // madvise flushes the TLB of every core (an inter-processor interrupt each),
            // and the next instance would take copy-on-write faults on the same pages.
            // This was a quarter of a node's CPU time serving a small function. The pages
            // are zeroed either way; nothing of one call survives into the next.
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY_BYTES)
            .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
            // Where the kernel can tell (Linux 6.7+, PAGEMAP_SCAN), only the pages the
            // last call dirtied are reset.
            .pagemap_scan(wasmtime::Enabled::Auto)
            // What still needs decommitting is done a few slots at a time.
            .decommit_batch_size(8);
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_stack_bytes)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime::Engine::new(&wasm)
            .map_err(|e| ComputeError::Setup(format!("wasmtime engine: {e:#}")))?;

        let mut http_linker = ComponentLinker::new(&engine);
        // All of WASI preview 2 (environment, clocks, random, stdio; the sandbox gives no
        // preopened directories and no sockets) plus wasi:http, as `wasmtime serve -Scli`
        // does, so components built with the Rust standard library link too.
        wasmtime_wasi::p2::add_to_linker_async(&mut http_linker)
            .map_err(|e| ComputeError::Setup(format!("wasi linker: {e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(|e| ComputeError::Setup(format!("wasi:http linker: {e:#}")))?;
        let mut cmd_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut cmd_linker, |s: &mut CmdState| &mut s.wasi)
            .map_err(|e| ComputeError::Setup(format!("wasi preview-1 linker: {e:#}")))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            let running = running.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if running.load(Ordering::Acquire) == 0 {
                            // Woken by the next guest to start; the timeout only bounds
                            // how long a stop request can go unnoticed.
                            std::thread::park_timeout(Duration::from_millis(500));
                            continue;
                        }
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| ComputeError::Setup(format!("epoch thread: {e}")))?
                .thread()
                .clone()
        };
        Ok(Engine {
            inner: Arc::new(EngineInner {
                slots: Arc::new(Semaphore::new(config.max_instances as usize)),
                // At least one slot always stays free for functions.
                commands: Arc::new(Semaphore::new(
                    (config
                        .max_commands
                        .min(config.max_instances.saturating_sub(1)))
                    .max(1) as usize,
                )),
                lanes: Arc::new(Semaphore::new(config.cpu_lanes.max(1))),
                short_activity: Arc::default(),
                engine,
                config,
                http_linker,
                cmd_linker,
                http_cache: Mutex::new(HashMap::new()),
                cmd_cache: Mutex::new(HashMap::new()),
                stop_ticker,
                running,
                ticker,
            }),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// CPU lanes held by long-running functions right now.
    pub fn cpu_lanes_busy(&self) -> usize {
        self.inner
            .config
            .cpu_lanes
            .max(1)
            .saturating_sub(self.inner.lanes.available_permits())
    }

    /// Compiles (or finds in the cache) a `wasi:http/proxy` component. Compilation runs
    /// on a blocking thread: it is CPU-heavy and must not stall the node's runtime.
    pub async fn http_module(&self, bytes: Bytes) -> Result<HttpModule, ComputeError> {
        let id = *blake3::hash(&bytes).as_bytes();
        if let Some(m) = lock(&self.inner.http_cache).get(&id) {
            return Ok(m.clone());
        }
        let inner = self.inner.clone();
        let module = tokio::task::spawn_blocking(move || -> Result<HttpModule, ComputeError> {
            let component = Component::new(&inner.engine, &bytes)
                .map_err(|e| ComputeError::InvalidModule(format!("{e:#}")))?;
            let pre = inner
                .http_linker
                .instantiate_pre(&component)
                .map_err(|e| ComputeError::InvalidModule(format!("{e:#}")))?;
            let pre = ProxyPre::new(pre).map_err(|e| {
                ComputeError::InvalidModule(format!(
                    "not a wasi:http/proxy component (it must export wasi:http/incoming-handler): {e:#}"
                ))
            })?;
            Ok(HttpModule {
                id,
                pre: Arc::new(pre),
            })
        })
        .await
        .map_err(|e| ComputeError::Setup(format!("compilation task: {e}")))??;
        let mut cache = lock(&self.inner.http_cache);
        if cache.len() >= self.inner.config.cached_modules {
            cache.clear();
        }
        cache.insert(id, module.clone());
        Ok(module)
    }

    /// Compiles (or finds in the cache) a WASI preview-1 command module.
    pub async fn command_module(&self, bytes: Bytes) -> Result<CommandModule, ComputeError> {
        let id = *blake3::hash(&bytes).as_bytes();
        if let Some(m) = lock(&self.inner.cmd_cache).get(&id) {
            return Ok(m.clone());
        }
        let inner = self.inner.clone();
        let module = tokio::task::spawn_blocking(move || -> Result<CommandModule, ComputeError> {
            let module = Module::new(&inner.engine, &bytes)
                .map_err(|e| ComputeError::InvalidModule(format!("{e:#}")))?;
            if module.get_export("_start").is_none() {
                return Err(ComputeError::InvalidModule(
                    "not a WASI command: it exports no `_start`".into(),
                ));
            }
            let pre = inner
                .cmd_linker
                .instantiate_pre(&module)
                .map_err(|e| ComputeError::InvalidModule(format!("{e:#}")))?;
            Ok(CommandModule {
                id,
                pre: Arc::new(pre),
            })
        })
        .await
        .map_err(|e| ComputeError::Setup(format!("compilation task: {e}")))??;
        let mut cache = lock(&self.inner.cmd_cache);
        if cache.len() >= self.inner.config.cached_modules {
            cache.clear();
        }
        cache.insert(id, module.clone());
        Ok(module)
    }

    /// Waits up to `wait` for one of the permits commands need before a slot.
    pub(crate) async fn command_permit(
        &self,
        wait: Duration,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ComputeError> {
        match tokio::time::timeout(wait, self.inner.commands.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ComputeError::Busy),
        }
    }

    /// Waits up to `wait` for a free instance slot, and keeps epochs ticking while the
    /// slot is held.
    pub(crate) async fn slot(&self, wait: Duration) -> Result<Slot, ComputeError> {
        match tokio::time::timeout(wait, self.inner.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                if self.inner.running.fetch_add(1, Ordering::AcqRel) == 0 {
                    self.inner.ticker.unpark();
                }
                Ok(Slot {
                    _permit: permit,
                    running: self.inner.running.clone(),
                })
            }
            _ => Err(ComputeError::Busy),
        }
    }
}
