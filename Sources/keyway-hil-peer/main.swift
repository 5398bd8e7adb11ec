// keyway-hil-peer — the BLE module's BlueZ transport as a command, for the hardware-in-the-loop suite
// (tools/hil/guest-tests) and for trying an adapter by hand. Depends on BLE only: it serves the
// Keyway lock GATT service with *test* handlers (a fixed hello, an echo of each presentation as a
// result notification), not the tap protocol — `keyway serve --transport bluez` does the real thing.
//
//   keyway-hil-peer lock --adapter hci0 [--name NAME] [--lock-id ID] [--security low|medium|high|fips]
//                        [--mode automatic|legacy|extended] [--allow-bluetoothd] [--advertise-only]
//       prints `ready <adapter> <address> mode=<…> security=<…>`, then one line per connection event;
//       runs until SIGINT/SIGTERM (--advertise-only: stops advertising and exits once ready).
//   keyway-hil-peer central --to ADDR [--type public|random] [--adapter hci1] [--security LEVEL]
//                           [--round-trips N] [--connect-timeout SECONDS]
//       connects, exchanges MTU, discovers the lock service, reads, subscribes, and times N
//       write → notification round trips; prints `ok …` lines.
//
// Failures: one line `keyway-hil-peer: <what happened — what to do>` on stderr, exit status 2.
import BLE
import Dispatch
import Synchronization
#if canImport(Glibc)
@preconcurrency import Glibc  // stdout/stderr are C globals: shared, and only ever flushed
#endif

setvbuf(stdout, nil, _IOLBF, 0)

func fail(_ message: String) -> Never {
    fputs("keyway-hil-peer: \(message)\n", stderr)
    exit(2)
}

struct Options {
    var values: [String: String] = [:]
    var flags: Set<String> = []

    init(_ arguments: ArraySlice<String>, flags known: Set<String>) {
        var it = arguments.makeIterator()
        while let a = it.next() {
            guard a.hasPrefix("--") else { fail("unexpected argument '\(a)'") }
            let key = String(a.dropFirst(2))
            if known.contains(key) {
                flags.insert(key)
            } else if let v = it.next() {
                values[key] = v
            } else {
                fail("option --\(key) needs a value")
            }
        }
    }

    subscript(_ key: String) -> String? { values[key] }

    func security() -> BlueZSecurityLevel {
        guard let text = values["security"] else { return .low }
        guard let level = BlueZSecurityLevel(name: text) else { fail("--security must be low, medium, high or fips") }
        return level
    }
}

func milliseconds(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
}

func format(_ ms: Double) -> String {
    let tenths = Int((ms * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

/// Stops on SIGINT/SIGTERM by running `action` (on a Dispatch queue) and exiting.
func onTermination(_ action: @escaping @Sendable () async -> Void) -> [DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            Task {
                await action()
                exit(0)
            }
        }
        source.resume()
        return source
    }
}

final class StopFlag: Sendable {
    private let value = Atomic(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

func runLock(_ o: Options) async throws {
    let adapter = o["adapter"] ?? "hci0"
    let name = o["name"] ?? "Keyway HIL Lock"
    let lockID = o["lock-id"] ?? "hil-lock"
    let security = o.security()
    let modeText = o["mode"] ?? "automatic"
    guard let mode = LEAdvertisingMode(rawValue: modeText) else { fail("--mode must be automatic, legacy or extended") }

    let handlers = KeywayLockService.Handlers(
        readerHello: { _ in Array("keyway-hil test hello".utf8) },
        presentation: { context, value in
            // Test handler: answer each write with a Result notification [length, first 16 bytes], so the
            // suite can time a write → notification round trip through the kernel stack.
            guard let handles = KeywayLockService.Handles(in: context.server.database) else { return }
            try context.server.notify(valueHandle: handles.result,
                                      value: [UInt8(truncatingIfNeeded: value.count)] + value.prefix(16))
        },
        lockInfo: { _ in Array("lock-id=\(lockID) transport=bluez harness=keyway-hil-peer".utf8) })
    let database = try KeywayLockService.database(deviceName: name, handlers: handlers)

    let peripheral = try await BlueZPeripheral.start(.init(
        adapter: adapter, name: name, serviceUUID: KeywayLockService.service, advertisingMode: mode,
        security: security, allowBluetoothd: o.flags.contains("allow-bluetoothd"),
        onRejected: { peer, error in print("rejected \(peer): \(error)") }))
    print("ready \(peripheral.adapter.name) \(peripheral.adapter.address) mode=\(peripheral.advertisingMode.rawValue) security=\(security)")
    if o.flags.contains("advertise-only") {
        await peripheral.stop()
        print("stopped")
        return
    }
    await peripheral.advertiser.onRestart { result in
        switch result {
        case .success(let n): print("advertising restarted (\(n))")
        case .failure(let e): print("advertising restart failed: \(e)")
        }
    }
    let stopping = StopFlag()
    let signals = onTermination { stopping.set(); await peripheral.stop() }
    defer { signals.forEach { $0.cancel() } }

    while true {
        let phone: BlueZPeripheral.Phone
        do {
            phone = try await peripheral.accept()
        } catch BlueZError.closed where stopping.isSet {
            return
        }
        let peer = phone.peer
        let pairing = await peripheral.pairingAgent?.decisions.last(where: { $0.peer == peer })
        print("connected \(peer) security=\(phone.security)\(pairing.map { " pairing=\($0.kind.rawValue)" } ?? "")")
        let server = try GATTServer(database: database, bearer: phone.bearer, configuration: .init(eventHandler: { event in
            switch event {
            case .mtuExchanged(let mtu): print("mtu \(peer) \(mtu)")
            case .subscriptionChanged(let handle, let config): print("subscription \(peer) 0x\(String(handle, radix: 16)) \(config.rawValue)")
            case .closed: break
            }
        }))
        Task {
            let reason = await server.waitUntilClosed()
            print("disconnected \(peer): \(reason)")
        }
    }
}

func runCentral(_ o: Options) async throws {
    guard let target = o["to"] else { fail("central needs --to ADDRESS") }
    let kind: BlueZAddress.Kind = o["type"] == "random" ? .leRandom : .lePublic
    let address = try BlueZAddress(target, kind: kind)
    let rounds = Int(o["round-trips"] ?? "5") ?? 5
    let clock = ContinuousClock()

    var start = clock.now
    let connectTimeout = Double(o["connect-timeout"] ?? "20") ?? 20
    let connection = try await BlueZCentral.connect(to: address, adapter: o["adapter"], security: o.security(),
                                                    timeout: .milliseconds(Int(connectTimeout * 1000)))
    let bearer = connection.bearer
    print("ok connect \(address) in \(format(milliseconds(clock.now - start))) ms (link MTU \(bearer.linkMTU), security \(connection.security))")
    let client = try GATTClient(bearer: bearer)
    defer { client.close() }

    let mtu = try await client.exchangeMTU()
    print("ok mtu \(mtu)")
    start = clock.now
    guard let service = try await client.discoverPrimaryServices(uuid: KeywayLockService.service).first else {
        fail("the Keyway lock service \(KeywayLockService.service) is not on \(address)")
    }
    let characteristics = try await client.discoverCharacteristics(of: service)
    print("ok discover \(service.uuid) handles \(service.handles) with \(characteristics.count) characteristics in \(format(milliseconds(clock.now - start))) ms")
    func find(_ uuid: BluetoothUUID) -> GATTRemoteCharacteristic {
        guard let c = characteristics.first(where: { $0.uuid == uuid }) else { fail("characteristic \(uuid) missing") }
        return c
    }
    let hello = find(KeywayLockService.readerHello), presentation = find(KeywayLockService.presentation)
    let result = find(KeywayLockService.result), info = find(KeywayLockService.lockInfo)
    print("ok read hello \(String(decoding: try await client.read(hello.valueHandle), as: UTF8.self))")
    print("ok read lock-info \(String(decoding: try await client.read(info.valueHandle), as: UTF8.self))")
    try await client.subscribe(result)
    print("ok subscribe result 0x\(String(result.valueHandle, radix: 16))")

    var notifications = client.notifications.makeAsyncIterator()
    var samples: [Double] = []
    for i in 0..<max(rounds, 0) {
        let payload = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 100)
        start = clock.now
        try await client.write(presentation.valueHandle, payload)
        guard let n = await notifications.next() else { fail("connection closed while waiting for a result") }
        samples.append(milliseconds(clock.now - start))
        guard n.valueHandle == result.valueHandle, n.value.first == 100 else {
            fail("unexpected notification on 0x\(String(n.valueHandle, radix: 16)): \(n.value)")
        }
    }
    if !samples.isEmpty {
        let sorted = samples.sorted()
        print("ok round-trips n=\(sorted.count) min=\(format(sorted[0])) median=\(format(sorted[sorted.count / 2])) max=\(format(sorted[sorted.count - 1])) ms (write request + result notification)")
    }
}

let arguments = CommandLine.arguments.dropFirst()
do {
    switch arguments.first {
    case "lock":
        try await runLock(Options(arguments.dropFirst(), flags: ["allow-bluetoothd", "advertise-only"]))
    case "central":
        try await runCentral(Options(arguments.dropFirst(), flags: []))
    default:
        fail("usage: keyway-hil-peer lock --adapter hciN … | central --to ADDRESS … (see Sources/keyway-hil-peer/main.swift)")
    }
} catch let error as BlueZError {
    fail(error.description)
} catch {
    fail("\(error)")
}
