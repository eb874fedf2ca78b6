"""``corosync-exec``: the daemon's entry point.

Theory of operation. Start-up follows Corosync's ``exec/main.c`` in order, with its exit codes
(:class:`ExitCode`): refuse to run setuid/setgid; read and check the configuration (exit 8 on a
``FILE:LINE: reason`` error, a missing or short authkey included); configure logging from the
``logging.*`` keys (exit 7); load the service-engine plugins (exit 20 when one fails, since a
node missing an engine its peers run would diverge from them). ``-t`` stops there and says which
node this host would be.

Otherwise the configuration goes into the cmap store, the daemon detaches unless ``-f``, starts
a uvloop event loop with its stop handlers (SIGTERM, SIGINT, SIGQUIT) in place, then takes the
pid lock in its run directory (exit 18 "Another Corosync instance is already running."), so a
stop signal sent as soon as the pid file appears is a clean stop. It moves into its state
directory, binds its Totem sockets (udpu, or udp multicast; exit 15 when it cannot) and runs
the Totem process (:mod:`pycorosync.exec.totemproc`) until the stop signal: then it leaves the
ring (a LEAVE, so the others reconfigure at once), unloads in reverse order and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib.metadata import version
from typing import Final, NoReturn

import uvloop

from pycorosync.exec.config import DEFAULT_CONFIG_FILE, LoadedConfig, load_config
from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.executive import Executive
from pycorosync.exec.icmap import CmapStore, install_default_ro_keys
from pycorosync.exec.logconfig import parse_logging_config
from pycorosync.exec.logformat import NOTICE
from pycorosync.exec.logsys import LogSys, subsys_logger
from pycorosync.exec.nodelist import NodeEntry
from pycorosync.exec.pidlock import AlreadyRunningError, PidLock
from pycorosync.exec.rundirs import RunDirs
from pycorosync.exec.scheduling import apply_scheduling
from pycorosync.exec.totem.pg_wire import MAX_FRAME_SIZE
from pycorosync.exec.totem.srp import Srp
from pycorosync.exec.totem.srp_config import SrpConfig
from pycorosync.exec.totem.srp_wire import MCAST_HEADER_SIZE
from pycorosync.exec.totemconfig import read_authkey
from pycorosync.exec.totemcrypto import PacketCrypto
from pycorosync.exec.totemnet import UdpuTransport, is_multicast, transport_notes
from pycorosync.exec.totemproc import RingSeqFile, TotemProcess, next_boot_id, sd_notify
from pycorosync.exec.totemudp import UdpMulticastTransport
from pycorosync.exec.workers import WorkerSettings, plan_workers
from pycorosync.plugins.errors import PluginError
from pycorosync.plugins.registry import ServiceRegistry

log = subsys_logger("MAIN")
serv_log = subsys_logger("SERV")
LOG_FLUSH_S: Final = 0.5
"""At most this long, at shutdown, to wait for our log lines to be written before the workers
(which write theirs themselves) log their unloads."""
totem_log = subsys_logger("TOTEM")
_KEYGEN_HINT = " (create the key with corosync-keygen and copy it to every node)"


class ExitCode(IntEnum):
    """Corosync's ``exec/util.h`` exit codes (the ones this executive can produce)."""

    OK = 0
    USAGE = 1
    FORK = 4
    LOGCONFIGREAD = 7
    MAINCONFIGREAD = 8
    FATAL = 15
    DIR_NOT_PRESENT = 16
    ACQUIRE_LOCK = 17
    ALREADY_RUNNING = 18
    SERVICE_ENGINE_INIT_FAILED = 20


class StartupError(Exception):
    def __init__(self, code: ExitCode, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Options:
    config_file: str
    foreground: bool
    test_only: bool
    show_version: bool
    nodeid: int | None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Corosync prints its usage and exits 1 on any bad option.
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: {message}\n")


def _nodeid(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid nodeid {text!r}") from None
    if not 1 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"nodeid {value} is out of range (1..4294967295)")
    return value


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = _Parser(prog="corosync-exec", description="The pycorosync cluster engine daemon.")
    parser.add_argument(
        "-c",
        dest="config_file",
        metavar="FILE",
        default=DEFAULT_CONFIG_FILE,
        help=f"configuration file (default {DEFAULT_CONFIG_FILE})",
    )
    parser.add_argument("-f", dest="foreground", action="store_true", help="stay in the foreground")
    parser.add_argument(
        "-t", dest="test_only", action="store_true", help="test the configuration and exit"
    )
    parser.add_argument(
        "-v", dest="show_version", action="store_true", help="print the version and exit"
    )
    parser.add_argument(
        "-n",
        dest="nodeid",
        metavar="NODEID",
        type=_nodeid,
        help="run as this nodeid of the nodelist (several nodes on one host)",
    )
    ns = parser.parse_args(argv)
    return Options(ns.config_file, ns.foreground, ns.test_only, ns.show_version, ns.nodeid)


def version_text() -> str:
    return f"Corosync Cluster Engine, version '{version('pycorosync')}' (pycorosync)\n"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.show_version:
        sys.stdout.write(version_text())
        return ExitCode.OK
    try:
        return _run(options)
    except StartupError as stop:
        if stop.message:
            print(stop.message, file=sys.stderr)
        return stop.code


def _run(options: Options) -> int:
    """Everything that can refuse to start runs before the fork, so its error reaches the
    operator's terminal and the exit code; the logging thread starts only after the fork."""
    _refuse_setid()
    config = _load_config(options)
    logging_keys = _check_logging(config)
    registry = _load_plugins()
    if options.test_only:
        _report_test(options.config_file, config, registry)
        return ExitCode.OK
    dirs = _prepare_dirs(config)
    protection = _packet_crypto(config, dirs)
    if not options.foreground:
        _daemonize()
    with LogSys() as logsys:
        logsys.apply(logging_keys)
        log.log(NOTICE, "Corosync Cluster Engine %s starting up", version("pycorosync"))
        for warning in config.warnings:
            log.warning("%s", warning)
        for engine in registry.load_order():
            serv_log.info("Service engine found: %s [%d]", engine.name, engine.service_id)
        apply_scheduling(config.parsed)
        return _serve(config, registry, dirs, protection, logsys.flush)


def _refuse_setid() -> None:
    if os.getuid() != os.geteuid() or os.getgid() != os.getegid():
        raise StartupError(ExitCode.FATAL, "corosync-exec refuses to run setuid or setgid.")


def _load_config(options: Options) -> LoadedConfig:
    try:
        return load_config(
            options.config_file,
            nodeid_override=options.nodeid,
            require_local_node=not options.test_only,
        )
    except ConfigError as error:
        raise StartupError(ExitCode.MAINCONFIGREAD, f"parser error: {error}") from None


def _check_logging(config: LoadedConfig) -> dict[str, str]:
    keys = _logging_keys(config)
    try:
        parse_logging_config(keys)
    except ConfigError as error:
        located = config.parsed.locate(error)
        raise StartupError(ExitCode.LOGCONFIGREAD, f"parse error in config: {located}") from None
    return keys


def _load_plugins() -> ServiceRegistry:
    registry = ServiceRegistry.load()
    try:
        registry.raise_for_failures()
    except PluginError as error:
        raise StartupError(ExitCode.SERVICE_ENGINE_INIT_FAILED, str(error)) from None
    return registry


def _report_test(path: str, config: LoadedConfig, registry: ServiceRegistry) -> None:
    engines = ", ".join(f"{e.name} [{e.service_id}]" for e in registry.load_order()) or "none"
    for warning in config.warnings:
        print(f"warning: {warning}")
    print(f"Configuration file '{path}' is valid.")
    print(config.describe_local())
    print(f"Service engines: {engines}.")


def _prepare_dirs(config: LoadedConfig) -> RunDirs:
    dirs = RunDirs.from_config(config.parsed, os.environ)
    try:
        dirs.create()
    except OSError as error:
        raise StartupError(
            ExitCode.DIR_NOT_PRESENT, f"Cannot create directory {error.filename}: {error.strerror}"
        ) from None
    return dirs


def _packet_crypto(config: LoadedConfig, dirs: RunDirs) -> PacketCrypto:
    """The packet protection of this boot (its boot id grows across restarts)."""
    crypto = config.totem.crypto
    members = [node.nodeid for node in config.nodelist]
    try:
        authkey = read_authkey(crypto)
        nodeid = config.local.require().nodeid
        try:
            boot_id = next_boot_id(dirs.state_dir, nodeid, time.time_ns())
        except OSError as error:
            raise StartupError(ExitCode.FATAL, f"Cannot store the boot id: {error}") from None
        return PacketCrypto(crypto, authkey, nodeid, members, boot_id=boot_id)
    except ConfigError as error:
        located = config.parsed.locate(error)
        hint = "" if "corosync-keygen" in str(error) else _KEYGEN_HINT
        raise StartupError(ExitCode.MAINCONFIGREAD, f"parser error: {located}{hint}") from None


def _serve(
    config: LoadedConfig,
    registry: ServiceRegistry,
    dirs: RunDirs,
    protection: PacketCrypto,
    flush_log: Callable[[float], bool],
) -> int:
    store = CmapStore(record_changes=True)
    install_default_ro_keys(store)
    config.load_into(store)
    store.take_changes()  # the workers start from a snapshot that already holds these
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(
            _serve_until_stopped(config, registry, dirs, protection, store, flush_log=flush_log)
        )


async def _serve_until_stopped(
    config: LoadedConfig,
    registry: ServiceRegistry,
    dirs: RunDirs,
    protection: PacketCrypto,
    store: CmapStore,
    *,
    flush_log: Callable[[float], bool],
) -> int:
    # The stop handlers go in before the pid file is written: whoever waits for the pid file
    # may signal at once, and a signal that finds no handler kills us with the pid file left.
    stop = _stop_on_signals()
    lock = PidLock(dirs.pid_file)
    try:
        lock.acquire()
    except AlreadyRunningError:
        log.error("Another Corosync instance is already running.")
        return ExitCode.ALREADY_RUNNING
    except OSError as error:
        log.error("Cannot lock %s: %s", dirs.pid_file, error.strerror)
        return ExitCode.ACQUIRE_LOCK
    try:
        os.chdir(dirs.state_dir)
        node = config.local.require()
        try:
            totem, executive = _start_totem(
                config, registry=registry, node=node, dirs=dirs, protection=protection, store=store
            )
        except StartupError as error:
            totem_log.error("%s", error.message)
            return error.code
        await stop.wait()
        if stop.fatal is not None:
            log.critical("Corosync Cluster Engine exiting on an internal error: %s", stop.fatal)
            return ExitCode.FATAL
        log.log(NOTICE, "Node was shut down by a signal")
        sd_notify("STOPPING=1")
        serv_log.log(NOTICE, "Unloading all Corosync service engines.")
        if executive is not None:
            # The workers log their unloads themselves: ours must be written first.
            flush_log(LOG_FLUSH_S)
            await executive.shutdown()
        totem.shutdown()
        log.log(NOTICE, "Corosync Cluster Engine exiting normally")
        return ExitCode.OK
    finally:
        lock.release()


def _start_totem(
    config: LoadedConfig,
    *,
    registry: ServiceRegistry,
    node: NodeEntry,
    dirs: RunDirs,
    protection: PacketCrypto,
    store: CmapStore,
) -> tuple[TotemProcess, Executive | None]:
    """Bind the socket, start the workers and the Totem process; StartupError (exit 15) if
    it cannot."""
    totem = config.totem
    ring_seq = RingSeqFile(dirs.state_dir, node.nodeid)
    members = [entry.nodeid for entry in config.nodelist]
    engines = registry.load_order()
    srp_config = SrpConfig.from_totem(totem)

    def new_core() -> Srp:
        try:
            stored_seq = ring_seq.load()
        except OSError as error:
            raise StartupError(ExitCode.FATAL, f"Cannot load the ring id: {error}") from None
        return Srp(srp_config, node.nodeid, members, stored_seq, hold_app_until_sync=bool(engines))

    core = new_core()
    transport = _open_transport(config, node)
    loop = asyncio.get_running_loop()
    executive = None
    if engines:
        executive = Executive(
            loop=loop,
            store=store,
            plans=plan_workers(engines),
            settings=WorkerSettings(
                run_dir=dirs.run_dir,
                logging_keys=_logging_keys(config),
                token_timeout=totem.token_ms / 1000,
            ),
            addresses={entry.nodeid: str(entry.ring0.address) for entry in config.nodelist},
            core=core,
            core_factory=new_core,
            max_frame=_max_frame(totem.netmtu, protection),
            notify_ready=_notify_ready,
        )
    process = TotemProcess(
        loop=loop,
        core=core,
        transport=transport,
        protection=protection,
        ring_seq=ring_seq,
        token_ms=totem.token_ms,
        listener=executive,
    )
    if executive is not None:
        executive.attach(process.flush, process.replace_core, process.figures)
        executive.start()
    process.start()
    return process, executive


IPV6_UDP_HEADERS = 48
"""An IPv6 header and a UDP header: the larger family bounds the frame for both."""


def _max_frame(netmtu: int, protection: PacketCrypto) -> int:
    """The largest totempg frame: a recovered message (one MCAST inside another) that is
    sealed must still fit one IPv6 datagram of ``netmtu`` bytes."""
    return min(
        MAX_FRAME_SIZE, netmtu - IPV6_UDP_HEADERS - protection.overhead - 2 * MCAST_HEADER_SIZE
    )


def _notify_ready() -> None:
    sd_notify("READY=1")


def _logging_keys(config: LoadedConfig) -> dict[str, str]:
    return {entry.key: str(entry.value) for entry in config.parsed.under("logging.")}


def _open_transport(config: LoadedConfig, node: NodeEntry) -> UdpuTransport | UdpMulticastTransport:
    """udp multicast for ``transport: udp`` (unless ``broadcast: yes``), else unicast; the
    socket errors become StartupError (exit 15), and the log says what runs."""
    totem, ring0 = config.totem, node.ring0
    for note in transport_notes(totem):
        totem_log.info("%s", note)
    if is_multicast(totem):
        try:
            udp = UdpMulticastTransport.from_config(totem, config.nodelist, node.nodeid)
        except OSError as error:
            interface = totem.interfaces[0]
            raise StartupError(
                ExitCode.FATAL,
                f"Cannot set up multicast group {interface.mcastaddr} port "
                f"{interface.mcastport} on {ring0.address} port {ring0.port}: "
                f"{error.strerror or error}",
            ) from None
        totem_log.log(
            NOTICE,
            "Initializing transport (UDP/IP Multicast) on %s port %d, group %s port %d.",
            ring0.address,
            ring0.port,
            udp.group.address,
            udp.group.port,
        )
        return udp
    try:
        udpu = UdpuTransport.from_config(totem, config.nodelist, node.nodeid)
    except OSError as error:
        raise StartupError(
            ExitCode.FATAL, f"Cannot bind to {ring0.address} port {ring0.port}: {error.strerror}"
        ) from None
    totem_log.log(
        NOTICE, "Initializing transport (UDP/IP Unicast) on %s port %d.", ring0.address, ring0.port
    )
    return udpu


class _Stop(asyncio.Event):
    """Set by a stop signal, or by an exception escaping a loop callback (then ``fatal``)."""

    fatal: str | None = None

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        # A callback of the Totem process raised: its state can no longer be trusted, and a
        # node that stops is better for the others than one that runs on inconsistently.
        error = context.get("exception")
        log.critical(
            "%s", context.get("message", "error in the event loop"), exc_info=_exc_info(error)
        )
        if self.fatal is None:
            self.fatal = repr(error) if error is not None else str(context.get("message"))
        self.set()


def _exc_info(error: object) -> BaseException | None:
    return error if isinstance(error, BaseException) else None


def _stop_on_signals() -> _Stop:
    loop = asyncio.get_running_loop()
    stop = _Stop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(signum, stop.set)
    loop.set_exception_handler(stop.on_loop_error)
    return stop


def _daemonize() -> None:
    """Detach as Corosync does: fork, new session, stdio onto /dev/null."""
    try:
        if os.fork() > 0:
            os._exit(ExitCode.OK)
    except OSError as error:
        raise StartupError(ExitCode.FORK, f"Could not fork: {error.strerror}") from None
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


if __name__ == "__main__":
    sys.exit(main())
