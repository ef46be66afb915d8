"""spice-glib (the library behind remote-viewer) driven from Python through PyGObject.

``connect`` opens a SPICE session the way remote-viewer does (TLS port,
password, CA, optional host subject and HTTP proxy), opens every channel
the server lists, and runs GLib's main loop until the display channel
reports its primary surface, an error ends the session, or time runs out.

spice-glib's Session and Channel shadow GObject's ``connect``: signals are
hooked with ``GObject.Object.connect`` and sessions/channels opened with
``SpiceClientGLib.Session.connect`` / ``SpiceClientGLib.Channel.connect``.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

CHANNEL_NAMES = {1: "main", 2: "display", 3: "inputs", 4: "cursor", 5: "playback", 6: "record", 9: "usbredir",
                 10: "port", 11: "webdav", 8: "smartcard"}


@dataclass
class Outcome:
    """What one session saw."""

    opened: List[str] = field(default_factory=list)
    """Channel names, in the order their ``opened`` event came."""
    events: List[Tuple[str, str]] = field(default_factory=list)
    """(channel name, event nick) of every channel event, also those of the client's own disconnect at the end."""
    live: int = 0
    """How many of ``events`` came while the session ran (before the client disconnected)."""
    primary: Optional[Tuple[int, int]] = None
    """Width and height of the display's primary surface."""
    announced: List[str] = field(default_factory=list)
    """Channel names, in the order the session's ``channel-new`` announced them."""
    agent_connected: Optional[bool] = None
    """The main channel's ``agent-connected`` when the session ended (None without a main channel)."""
    port_names: List[str] = field(default_factory=list)
    """The ``port-name`` of every port channel, as QEMU's PORT_INIT gave it."""
    usb_free_channels: Optional[int] = None
    """With ``usb``: the USB device manager's usbredir channels ready for a device when the session ended."""

    @property
    def live_events(self) -> List[Tuple[str, str]]:
        """The events that came while the session ran."""
        return self.events[:self.live]

    @property
    def errors(self) -> List[Tuple[str, str]]:
        return [(name, nick) for name, nick in self.events if nick.startswith("error")]


def _name(channel: SpiceClientGLib.Channel) -> str:
    kind = channel.get_property("channel-type")
    return f"{CHANNEL_NAMES.get(kind, kind)}:{channel.get_property('channel-id')}"


def connect(host: str, tls_port: int, password: str, ca_file: Path, *, host_subject: Optional[str] = None,
            proxy: Optional[str] = None, timeout: float = 20.0,
            until_opened: Tuple[str, ...] = ("main", "display", "inputs", "cursor"), linger: float = 0.0,
            usb: bool = False) -> Outcome:
    """Run a session until it shows its primary surface with ``until_opened`` open, or fails, or times out.

    With ``linger``, the session goes on that many seconds after that (its
    events still recorded) unless an error ends it first.  With ``usb``, the
    session has a USB device manager, as remote-viewer's has: it hands the
    usbredir channels their usbredir host (no device is redirected).
    """
    outcome = Outcome()
    loop = GLib.MainLoop()
    session = SpiceClientGLib.Session()
    session.set_property("host", host)
    session.set_property("tls-port", str(tls_port))
    session.set_property("password", password)
    session.set_property("ca-file", str(ca_file))
    if host_subject is not None:
        session.set_property("cert-subject", host_subject)
    if proxy is not None:
        session.set_property("proxy", proxy)
    usb_manager = None
    if usb:
        usb_manager = SpiceClientGLib.UsbDeviceManager.get(session)
        usb_manager.set_property("auto-connect", False)
    keep: Dict[int, SpiceClientGLib.Channel] = {}
    lingering: List[int] = []

    def done() -> bool:
        kinds = {name.split(":")[0] for name in outcome.opened}
        return outcome.primary is not None and all(kind in kinds for kind in until_opened)

    def end_of_linger() -> bool:
        lingering.clear()
        loop.quit()
        return False

    def finish() -> None:
        if linger <= 0:
            loop.quit()
        elif not lingering:
            lingering.append(GLib.timeout_add(int(linger * 1000), end_of_linger))

    def on_event(channel: SpiceClientGLib.Channel, event: SpiceClientGLib.ChannelEvent) -> None:
        nick = event.value_nick
        outcome.events.append((_name(channel), nick))
        if nick == "opened":
            outcome.opened.append(_name(channel))
        if nick.startswith("error"):
            loop.quit()
        elif done():
            finish()

    def on_primary(channel: SpiceClientGLib.Channel, _format: int, width: int, height: int, *_rest: object) -> None:
        outcome.primary = (width, height)
        if done():
            finish()

    def on_port_name(channel: SpiceClientGLib.PortChannel, _spec: object) -> None:
        outcome.port_names.append(channel.get_property("port-name"))

    def on_channel(_session: SpiceClientGLib.Session, channel: SpiceClientGLib.Channel) -> None:
        keep[id(channel)] = channel
        outcome.announced.append(_name(channel))
        GObject.Object.connect(channel, "channel-event", on_event)
        if isinstance(channel, SpiceClientGLib.DisplayChannel):
            GObject.Object.connect(channel, "display-primary-create", on_primary)
        if isinstance(channel, SpiceClientGLib.PortChannel):
            GObject.Object.connect(channel, "notify::port-name", on_port_name)
        if not isinstance(channel, SpiceClientGLib.MainChannel):
            SpiceClientGLib.Channel.connect(channel)

    timed_out = []

    def time_out() -> bool:
        timed_out.append(True)
        loop.quit()
        return False

    GObject.Object.connect(session, "channel-new", on_channel)
    timer = GLib.timeout_add(int(timeout * 1000), time_out)
    try:
        if not SpiceClientGLib.Session.connect(session):
            raise RuntimeError("spice_session_connect() refused to start")
        loop.run()
    finally:
        if not timed_out:
            GLib.source_remove(timer)
        for source in lingering:
            GLib.source_remove(source)
        outcome.live = len(outcome.events)
        if usb_manager is not None:
            outcome.usb_free_channels = usb_manager.get_property("free-channels")
        for channel in keep.values():
            if isinstance(channel, SpiceClientGLib.MainChannel):
                outcome.agent_connected = channel.get_property("agent-connected")
        session.disconnect()
        context = loop.get_context()
        while context.pending():
            context.iteration(False)
    return outcome


def connect_vv(vv_file: Path, work_dir: Path, **options) -> Outcome:
    """Open the session a remote-viewer file (.vv) describes, reading its keys the way virt-viewer does."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(vv_file.read_text())
    keys = parser["virt-viewer"]
    assert keys["type"] == "spice"
    ca_file = work_dir / f"{vv_file.stem}-ca.pem"
    ca_file.write_text(keys["ca"].replace("\\n", "\n"))
    return connect(keys["host"], int(keys["tls-port"]), keys["password"], ca_file,
                   host_subject=keys.get("host-subject"), proxy=keys.get("proxy"), **options)
