import BLE
import Foundation

public enum TransportKind: String, Sendable, CaseIterable { case loopback, bluez }
public enum ClockMode: String, Sendable, CaseIterable { case real, simulated }

/// The shape of webhook bodies: CloudEvents signed per Standard Webhooks (default), or Kisi's event
/// shape signed with its `X-Signature` (docs/KISI.md).
public enum UpstreamFormat: String, Sendable, CaseIterable { case cloudevents, kisi }

public struct UpstreamEndpoint: Sendable {
    public var url: String
    public var secret: String
    public init(url: String, secret: String) { self.url = url; self.secret = secret }
}

/// Everything `keyway serve` can be told. Defaults are what `make run` uses.
public struct EmulatorOptions: Sendable {
    public var sitePath: String
    public var dataDir: String = ".keyway"
    public var transport: TransportKind = .loopback
    public var listenHost: String = "127.0.0.1"
    public var listenPort: Int = 8080
    public var clock: ClockMode = .real
    /// Start of simulated time (default: the real time at start, to the second).
    public var clockStart: Date?
    public var upstreams: [UpstreamEndpoint] = []
    public var upstreamFormat: UpstreamFormat = .cloudevents
    /// NDJSON file of every event, for when there is no access core ("-" = stdout).
    public var eventsFile: String?
    /// Deliver events still held by a lock out of IQ reach (integration tests often want this).
    public var deliverHeld: Bool = false
    public var capturePath: String?
    /// Required on every request when bound to anything but loopback.
    public var apiToken: String?
    /// Host names the control API answers to besides its listen address and localhost (`--allow-host`).
    public var allowedHosts: [String] = []
    /// BlueZ: which adapter, and which locks it advertises (nil: every lock of the site). One lock is
    /// advertised under the adapter's own address; several each under their own static random address.
    public var adapter: String = "hci0"
    public var bleLocks: [String]?
    /// BlueZ: the advertising command set (`legacy` makes the locks take turns on one advertiser).
    public var bleAdvertising: LEAdvertisingMode = .automatic
    /// BlueZ: how long each lock stays on the air when locks take turns in a slot.
    public var bleRotationInterval: Duration = .milliseconds(500)
    /// BlueZ: use at most this many extended advertising sets (nil: all the controller has).
    public var bleAdvertisingSets: Int?
    /// BlueZ: `BT_SECURITY` required of phones (above `low`, Keyway's agent answers Just Works pairing).
    public var bleSecurity: BlueZSecurityLevel = .low
    /// Phone connections each transport (the phone socket, BlueZ) holds open at once; more are refused.
    public var maxPhoneConnections: Int = PhoneSocketRadio.defaultMaximumConnections
    /// Seconds of the emulator's clock after which a phone connection on which the phone sent nothing is closed.
    public var phoneIdleTimeout: TimeInterval = PhoneSocketRadio.defaultIdleTimeout
    /// BlueZ: the RSSI → distance model for the readers' reach (`--ble-rssi-at-1m`, `--ble-path-loss-exponent`).
    public var blePathLoss = PathLossModel()
    /// BlueZ: hold every phone at the reader instead of measuring its RSSI (`--ble-reach at-reader`), for
    /// controllers that do not implement HCI Read RSSI (BlueZ's btvirt): reach is then not checked.
    public var bleReachAtReader = false
    /// BlueZ: start even though a bluetoothd process runs (only if it does not serve this adapter).
    public var allowBluetoothd: Bool = false

    public init(sitePath: String) { self.sitePath = sitePath }

    public var isLoopbackBind: Bool { ["127.0.0.1", "::1", "localhost"].contains(listenHost) }
}
