import CBlueZ
#if canImport(Glibc)
import Glibc
#endif

/// The lock side of the BlueZ transport: one adapter exposing one lock. Listens on the LE ATT channel,
/// advertises the lock service and name, and hands each phone that connects over as an `ATTBearer`
/// carrying bare ATT PDUs (`SocketBearer` on the L2CAP socket), ready for a GATT server.
///
/// Start-up order matters: the adapter is checked (exists, up), bluetoothd is looked for, the ATT
/// listener is bound *before* advertising starts (a phone may connect the moment it sees the lock).
public final class BlueZPeripheral: Sendable {
    public struct Configuration: Sendable {
        /// `hciN`.
        public var adapter: String
        /// The lock's name, in the scan response.
        public var name: String
        /// The lock service UUID, in the advertisement.
        public var serviceUUID: BluetoothUUID
        public var advertising: LEAdvertisingParameters
        public var advertisingMode: LEAdvertisingMode
        /// `BT_SECURITY` required of phones (inherited by each accepted connection).
        public var security: BlueZSecurityLevel
        /// Start even though bluetoothd runs (only if you know it does not serve this adapter).
        public var allowBluetoothd: Bool
        /// Told about each phone refused before it reached the GATT server (security not reached);
        /// `accept()` then goes on waiting for the next one.
        public var onRejected: (@Sendable (BlueZAddress, BlueZError) -> Void)?
        /// Several locks on this adapter (each its own static random address and payload; `name` and
        /// `serviceUUID` then unused). Empty: the one lock above, under the adapter's public address.
        public var locks: [LEAdvertisedLock] = []
        /// How long each lock stays on the air in a time-shared slot (when there are more locks than slots).
        public var rotationInterval: Duration = .milliseconds(500)
        /// Use at most this many extended advertising sets (nil: as many as the controller has).
        public var maximumAdvertisingSets: Int?

        public init(adapter: String, name: String, serviceUUID: BluetoothUUID,
                    advertising: LEAdvertisingParameters = .init(), advertisingMode: LEAdvertisingMode = .automatic,
                    security: BlueZSecurityLevel = .low, allowBluetoothd: Bool = false,
                    onRejected: (@Sendable (BlueZAddress, BlueZError) -> Void)? = nil) {
            self.adapter = adapter
            self.name = name
            self.serviceUUID = serviceUUID
            self.advertising = advertising
            self.advertisingMode = advertisingMode
            self.security = security
            self.allowBluetoothd = allowBluetoothd
            self.onRejected = onRejected
        }
    }

    /// A phone that connected.
    public struct Phone: Sendable {
        public let bearer: SocketBearer
        public let peer: BlueZAddress
        /// Security level the connection had when accepted.
        public let security: BlueZSecurityLevel
        /// The link's HCI connection handle, or why it could not be read (then its RSSI cannot be either).
        public let connectionHandle: Result<UInt16, BlueZError>
        /// With several locks: the index (into `Configuration.locks`) of the lock whose advertisement the
        /// phone answered, as the controller reported it. Nil with one lock.
        public let lockIndex: Int?
    }

    public let configuration: Configuration
    public let adapter: BlueZAdapterInfo
    public let advertiser: BlueZAdvertiser
    /// The advertising command set that worked (legacy, or extended after a legacy refusal).
    public let advertisingMode: LEAdvertisingMode
    /// With several locks: the advertising slots and how the locks share them.
    public let roster: LEAdvertisingRoster?
    /// Answers Just Works pairing when `security` is above `low` (nil otherwise).
    public let pairingAgent: BlueZPairingAgent?
    private let listener: BlueZL2CAPListener

    private init(configuration: Configuration, adapter: BlueZAdapterInfo, advertiser: BlueZAdvertiser,
                 advertisingMode: LEAdvertisingMode, roster: LEAdvertisingRoster?, listener: BlueZL2CAPListener,
                 pairingAgent: BlueZPairingAgent?) {
        self.configuration = configuration
        self.roster = roster
        self.adapter = adapter
        self.advertiser = advertiser
        self.advertisingMode = advertisingMode
        self.listener = listener
        self.pairingAgent = pairingAgent
    }

    /// Checks the adapter, binds the ATT channel and starts advertising.
    /// - Throws: `BlueZError` — each failure of the issue has its own case and one-line message.
    public static func start(_ configuration: Configuration) async throws -> BlueZPeripheral {
        let adapter = try BlueZAdapterInfo.requireUp(configuration.adapter)
        let payload = try LEAdvertisingPayload.lock(serviceUUID: configuration.serviceUUID, name: configuration.name)
        let listener = try BlueZL2CAPListener(adapter: adapter, security: configuration.security,
                                              allowBluetoothd: configuration.allowBluetoothd)
        var agent: BlueZPairingAgent?
        do {
            if configuration.security.rawValue > BlueZSecurityLevel.low.rawValue {
                agent = try BlueZPairingAgent(adapter: adapter)
                await agent?.start()
            }
            let advertiser = try BlueZAdvertiser(adapter: adapter)
            do {
                if !configuration.locks.isEmpty {
                    let roster = try await advertiser.startLocks(configuration.locks, parameters: configuration.advertising,
                                                                 mode: configuration.advertisingMode,
                                                                 rotationInterval: configuration.rotationInterval,
                                                                 maximumSets: configuration.maximumAdvertisingSets)
                    return BlueZPeripheral(configuration: configuration, adapter: adapter, advertiser: advertiser,
                                           advertisingMode: roster.isExtended ? .extended : .legacy, roster: roster,
                                           listener: listener, pairingAgent: agent)
                }
                let mode = try await advertiser.start(payload, parameters: configuration.advertising,
                                                      mode: configuration.advertisingMode)
                return BlueZPeripheral(configuration: configuration, adapter: adapter, advertiser: advertiser,
                                       advertisingMode: mode, roster: nil, listener: listener, pairingAgent: agent)
            } catch {
                await advertiser.close()
                throw error
            }
        } catch {
            await agent?.close()
            listener.close()
            throw error
        }
    }

    /// Waits for the next phone. Advertising resumes by itself once a phone disconnects.
    ///
    /// With a security level above `low`, each phone's link is raised to it (the lock asks the phone to
    /// pair or encrypt) before the phone is handed over; a phone that does not get there is
    /// disconnected, reported to `onRejected`, and never reaches the GATT server.
    public func accept() async throws -> Phone {
        while true {
            let connection = try await listener.accept()
            var security = (try? connection.securityLevel()) ?? .low
            if configuration.security.rawValue > security.rawValue {
                do {
                    security = try await connection.establishSecurity(configuration.security)
                } catch let error as BlueZError {
                    connection.close()
                    configuration.onRejected?(connection.peer, error)
                    continue
                }
            }
            let mtu = BlueZCentral.linkMTU(connection)
            let handle: Result<UInt16, BlueZError> = Result { () throws(BlueZError) in
                do { return try connection.connectionHandle() } catch let e as BlueZError { throw e } catch {
                    throw BlueZError.system(operation: "reading L2CAP_CONNINFO", errno: EIO)
                }
            }
            // Several locks: the phone reaches the lock whose advertisement it answered, as the controller
            // reported it, or none (deny by default).
            var lockIndex: Int?
            if roster != nil {
                let origin: LEConnectionOrigin
                if case .success(let h) = handle { origin = await advertiser.origin(ofConnection: h) } else { origin = .unknown }
                guard case .lock(let index) = origin else {
                    connection.close()
                    configuration.onRejected?(connection.peer, .connectionNotAttributed(peer: connection.peer.description))
                    continue
                }
                lockIndex = index
            }
            // Asked again just before the phone is handed over: a controller that reported the connection
            // from a second set meanwhile made it ambiguous (deny by default).
            if let index = lockIndex, case .success(let h) = handle,
               await advertiser.origin(ofConnection: h, within: .zero) != .lock(index) {
                connection.close()
                configuration.onRejected?(connection.peer, .connectionNotAttributed(peer: connection.peer.description))
                continue
            }
            guard let fd = connection.takeFileDescriptor() else { throw BlueZError.closed }
            do {
                return Phone(bearer: try SocketBearer(adopting: fd, framing: .seqpacket, linkMTU: mtu),
                             peer: connection.peer, security: security, connectionHandle: handle, lockIndex: lockIndex)
            } catch {
                _ = Glibc.close(fd)
                throw error
            }
        }
    }

    /// The phone's signal strength now (HCI Read RSSI on the advertiser's HCI socket), in dBm; 127 when
    /// the controller has none.
    /// - Throws: `BlueZError` — no connection handle, the command refused, timed out or answered for
    ///   another connection.
    public func readRSSI(_ phone: Phone) async throws -> Int8 {
        let handle = try phone.connectionHandle.get()
        let answer = try await advertiser.execute(.readRSSI(connectionHandle: handle))
        return try HCIReadRSSIResult.decode(answer, connectionHandle: handle).rssi
    }

    /// Stops advertising and listening. Connected phones' bearers stay open until closed.
    public func stop() async {
        listener.close()
        await advertiser.close()
        await pairingAgent?.close()
    }
}

/// The phone side of the BlueZ transport.
public enum BlueZCentral {
    /// A connection to a lock.
    public struct Connection: Sendable {
        public let bearer: SocketBearer
        public let peer: BlueZAddress
        /// The security level the link reached (the kernel completes `connect` only once the requested
        /// level is met: pairing/encryption happen inside the connect).
        public let security: BlueZSecurityLevel
    }

    /// Connects from `adapter` (e.g. `hci1`; nil: the kernel picks) to a lock's ATT channel.
    public static func connect(to lock: BlueZAddress, adapter: String? = nil, security: BlueZSecurityLevel = .low,
                               timeout: Duration = .seconds(20)) async throws -> Connection {
        let local = try adapter.map { try BlueZAdapterInfo.requireUp($0) }
        // Security above `low` means pairing inside the connect; answer its Just Works confirmation.
        var agent: BlueZPairingAgent?
        if security.rawValue > BlueZSecurityLevel.low.rawValue, let local {
            agent = try BlueZPairingAgent(adapter: local)
            await agent?.start()
        }
        defer { if let agent { Task { await agent.close() } } }
        let connection = try await BlueZL2CAPClient.connect(to: lock, from: local, security: security, timeout: timeout)
        let mtu = linkMTU(connection)
        let reached = (try? connection.securityLevel()) ?? security
        guard let fd = connection.takeFileDescriptor() else { throw BlueZError.closed }
        do {
            return Connection(bearer: try SocketBearer(adopting: fd, framing: .seqpacket, linkMTU: mtu),
                              peer: lock, security: reached)
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
    }

    /// The largest ATT PDU the L2CAP channel carries: the smaller of the kernel's send and receive
    /// MTUs for the socket (672 for the ATT channel on current kernels), capped at ATT's 517.
    static func linkMTU(_ connection: BlueZL2CAPConnection) -> Int {
        guard let fd = connection.peekFileDescriptor() else { return ATT.maximumMTU }
        var mtu = ATT.maximumMTU
        for option in [BT_SNDMTU, BT_RCVMTU] {
            let (value, error) = BlueZSys.getOption(fd, level: SOL_BLUETOOTH, name: option, UInt16(0))
            if error == nil, value > 0 { mtu = min(mtu, Int(value)) }
        }
        return max(mtu, ATT.defaultMTU)
    }
}
