// The Keyway lock GATT service: the four characteristics of a tap (docs/PROTOCOL-ble.md).
// The service only wires characteristics to the caller's handlers — the tap protocol itself
// (hello, presentation, result) belongs to MobileKey; the Emulator connects the two.

/// Factory and UUIDs of the Keyway lock service.
///
/// | characteristic | UUID                                   | properties     | carries                          |
/// |----------------|----------------------------------------|----------------|----------------------------------|
/// | service        | B80C0001-1C1F-4153-94CB-D7B58DCACA15   | primary        |                                  |
/// | Reader Hello   | B80C0002-1C1F-4153-94CB-D7B58DCACA15   | read, write, notify | the phone's hello in (write), the lock's signed hello out (read) |
/// | Presentation   | B80C0003-1C1F-4153-94CB-D7B58DCACA15   | write          | the phone's presentation (long writes) |
/// | Result         | B80C0004-1C1F-4153-94CB-D7B58DCACA15   | notify         | the lock's decision              |
/// | Lock Info      | B80C0005-1C1F-4153-94CB-D7B58DCACA15   | read           | lock id, versions (upper layer)  |
/// | FAST           | B80C0006-1C1F-4153-94CB-D7B58DCACA15   | write          | a FAST repeat tap's request (when the lock offers FAST) |
///
/// The UUIDs share one random (version 4) base so a scanner can filter on the service UUID.
/// Every value is at most 512 bytes (the ATT limit); longer messages must be split by the protocol
/// above (e.g. several Presentation writes or Result notifications of ATT_MTU-3 bytes).
public enum KeywayLockService {
    public static let service = BluetoothUUID("B80C0001-1C1F-4153-94CB-D7B58DCACA15")!
    public static let readerHello = BluetoothUUID("B80C0002-1C1F-4153-94CB-D7B58DCACA15")!
    public static let presentation = BluetoothUUID("B80C0003-1C1F-4153-94CB-D7B58DCACA15")!
    public static let result = BluetoothUUID("B80C0004-1C1F-4153-94CB-D7B58DCACA15")!
    public static let lockInfo = BluetoothUUID("B80C0005-1C1F-4153-94CB-D7B58DCACA15")!
    public static let fast = BluetoothUUID("B80C0006-1C1F-4153-94CB-D7B58DCACA15")!

    /// The handlers a lock supplies. Each runs on the connection's worker, one request at a time per
    /// connection; `GATTRequestContext.server` identifies the connection (and notifies on it).
    public struct Handlers: Sendable {
        /// Produces the reader hello for this connection (read; also sent by notification when the
        /// lock chooses, via `GATTServer.notify` on `Handles.readerHello`).
        public var readerHello: GATTReadHandler
        /// Receives the phone's hello (protocol v2: written to Reader Hello before it is read). When
        /// nil, Reader Hello is read-only.
        public var phoneHello: GATTWriteHandler?
        /// Receives a complete presentation (a Write Request, or a long write once executed).
        /// Throw an `ATTErrorCode` to refuse it at the ATT level; the tap result goes by notification.
        public var presentation: GATTWriteHandler
        /// Produces the lock info value.
        public var lockInfo: GATTReadHandler
        /// Receives a FAST repeat tap's request; the result goes by notification on Result. When nil,
        /// the service has no FAST characteristic (the database ends after Lock Info).
        public var fast: GATTWriteHandler?

        public init(readerHello: @escaping GATTReadHandler, phoneHello: GATTWriteHandler? = nil,
                    presentation: @escaping GATTWriteHandler, lockInfo: @escaping GATTReadHandler,
                    fast: GATTWriteHandler? = nil) {
            self.readerHello = readerHello
            self.phoneHello = phoneHello
            self.presentation = presentation
            self.lockInfo = lockInfo
            self.fast = fast
        }
    }

    /// The value handles of the service's characteristics in a database.
    public struct Handles: Sendable, Equatable {
        public let readerHello: UInt16
        public let presentation: UInt16
        public let result: UInt16
        public let lockInfo: UInt16
        /// nil when the lock offers no FAST.
        public let fast: UInt16?

        /// Finds the lock service in `database`; nil if it is not there.
        public init?(in database: GATTDatabase) {
            guard let hello = database.handles(of: KeywayLockService.readerHello, in: KeywayLockService.service),
                  let pres = database.handles(of: KeywayLockService.presentation, in: KeywayLockService.service),
                  let res = database.handles(of: KeywayLockService.result, in: KeywayLockService.service),
                  let info = database.handles(of: KeywayLockService.lockInfo, in: KeywayLockService.service) else { return nil }
            readerHello = hello.value
            presentation = pres.value
            result = res.value
            lockInfo = info.value
            fast = database.handles(of: KeywayLockService.fast, in: KeywayLockService.service)?.value
        }
    }

    /// The service definition, wired to `handlers`.
    public static func make(_ handlers: Handlers) -> GATTService {
        var characteristics = [
            GATTCharacteristic(uuid: readerHello, properties: handlers.phoneHello == nil ? [.read, .notify] : [.read, .write, .notify],
                               value: .dynamic(read: handlers.readerHello, write: handlers.phoneHello),
                               descriptors: [.userDescription("Reader Hello")]),
            GATTCharacteristic(uuid: presentation, properties: [.write],
                               value: .dynamic(read: nil, write: handlers.presentation),
                               descriptors: [.userDescription("Presentation")]),
            GATTCharacteristic(uuid: result, properties: [.notify],
                               value: .dynamic(read: nil, write: nil),
                               descriptors: [.userDescription("Result")]),
            GATTCharacteristic(uuid: lockInfo, properties: [.read],
                               value: .dynamic(read: handlers.lockInfo, write: nil),
                               descriptors: [.userDescription("Lock Info")]),
        ]
        if let fastHandler = handlers.fast {
            characteristics.append(GATTCharacteristic(uuid: fast, properties: [.write], value: .dynamic(read: nil, write: fastHandler),
                                                      descriptors: [.userDescription("FAST")]))
        }
        return GATTService(uuid: service, characteristics: characteristics)
    }

    /// A complete lock database: GAP (name, Access Lock appearance), GATT, and the lock service.
    /// (It cannot fail with these definitions; the error type is the database's.)
    public static func database(deviceName: String, handlers: Handlers) throws(GATTDatabaseError) -> GATTDatabase {
        try GATTDatabase(services: [GAPService.make(deviceName: deviceName), GATTProfileService.make(), make(handlers)])
    }
}
