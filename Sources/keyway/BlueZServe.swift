import BLE
import Emulator
import Foundation
import Hardware
import Synchronization

/// The radio side of `serve --transport bluez`: the adapter advertises the site's locks (every one, or
/// the `--ble-locks` subset) and every phone that connects is served by the GATT database of the lock
/// whose advertisement it answered, wired to its tap protocol — the same `LockGATT` the loopback radio
/// uses, so a real phone sees exactly what the built-in phone sees. One lock is advertised under the
/// adapter's own address; several each under their own static random address (docs/PROTOCOL.md §3b).
struct BlueZPeripheralHandle {
    let summary: String
    let stopBody: @Sendable () async -> Void
    func stop() async { await stopBody() }
}

/// Starts the BlueZ lock when `--transport bluez`; nil for the loopback.
/// - Throws: `BlueZError` (its one-line message says what to do) or `UserFacingError`.
func startBlueZIfRequested(_ emu: Emulator) async throws -> BlueZPeripheralHandle? {
    guard emu.options.transport == .bluez else { return nil }
    let selected = emu.options.bleLocks ?? emu.config.locks.map(\.id)
    guard !selected.isEmpty else { throw UserFacingError("--transport bluez: site \(emu.config.siteID) has no lock to advertise") }
    for id in selected where emu.lockGATT(id) == nil {
        throw UserFacingError("--ble-lock(s) \(id): no lock '\(id)' in site \(emu.config.siteID) (locks: \(emu.config.locks.map(\.id).joined(separator: ", ")))")
    }
    let names = selected.map { id in emu.config.locks.first { $0.id == id }?.name ?? id }
    // Several locks: each its own static random address, derived from site and lock so a restart keeps it.
    let addresses = LEStaticRandomAddress.distinct(for: selected.map { "\(emu.config.siteID)/\($0)" })
    let advertised: [LEAdvertisedLock] = selected.count < 2 ? [] : try selected.indices.map { i in
        LEAdvertisedLock(id: selected[i], address: addresses[i],
                         payload: try LEAdvertisingPayload.lock(serviceUUID: KeywayLockService.service, name: names[i]))
    }
    let model = emu.options.blePathLoss
    if let why = model.validationError { throw UserFacingError("--ble-rssi-at-1m / --ble-path-loss-exponent: \(why)") }
    var configuration = BlueZPeripheral.Configuration(
        adapter: emu.options.adapter, name: names[0], serviceUUID: KeywayLockService.service,
        advertisingMode: emu.options.bleAdvertising,
        security: emu.options.bleSecurity, allowBluetoothd: emu.options.allowBluetoothd,
        onRejected: { peer, error in bluezLog("phone \(peer) rejected: \(error)") })
    configuration.locks = advertised
    configuration.rotationInterval = emu.options.bleRotationInterval
    configuration.maximumAdvertisingSets = emu.options.bleAdvertisingSets
    let peripheral = try await BlueZPeripheral.start(configuration)
    if let roster = peripheral.roster {
        for (i, lock) in advertised.enumerated() {
            let slot = i % roster.slots.count
            let where_ = roster.isExtended ? String(format: "set 0x%02X", roster.slots[slot]) : "legacy advertiser"
            bluezLog("advertising lock \(lock.id) \"\(names[i])\" as \(lock.address) (random static) in \(where_)")
        }
    }
    await peripheral.advertiser.onRestart { result in
        switch result {
        case .success(let n): bluezLog("advertising restarted (\(n))")
        case .failure(let e): bluezLog("advertising restart failed: \(e)")
        }
    }

    // The same bounds as the phone socket's: at most --max-phone-connections phones at once (the
    // controller's own limit is usually lower), and silent ones closed after --phone-idle-timeout.
    let cap = emu.options.maxPhoneConnections
    let idle = IdleConnections(clock: emu.clock, timeout: emu.options.phoneIdleTimeout) { n, timeout in
        bluezLog("closed \(n) phone connection\(n == 1 ? "" : "s") idle for \(Int(timeout)) s (--phone-idle-timeout)")
    }
    let stopping = StopSignal()
    let loop = Task {
        while true {
            let phone: BlueZPeripheral.Phone
            do {
                phone = try await peripheral.accept()
            } catch {
                if !stopping.isSet { bluezLog("accepting phones failed, no more connections: \(error)") }
                return
            }
            // The lock whose advertisement the phone answered (the peripheral refused any it could not tie
            // to one). Its GATT is looked up per connection: POST /v1/reset builds a fresh radio.
            let lockID = phone.lockIndex.map { advertised[$0].id } ?? selected[0]
            guard let gatt = emu.lockGATT(lockID) else { phone.bearer.close(); continue }
            guard idle.count < cap else {
                bluezLog("phone \(phone.peer) refused: \(cap) of \(cap) phone connections open (--max-phone-connections)")
                phone.bearer.close()
                continue
            }
            var bearer: any ATTBearer = idle.watch(phone.bearer)
            if let capture = emu.linkCapture {
                do { bearer = try CapturingBearer(wrapping: bearer, writer: capture, role: .peripheral) }
                catch { bluezLog("capture of \(phone.peer) not written: \(error)") }
            }
            // The reader's reach over the air: the link's RSSI through the path-loss model, judged by the
            // lock against its kind's reach like any other distance (out of reach: ATT 0x80 on the hello).
            // Measured once, when the phone connects; an unreadable RSSI counts as out of reach.
            let reach: RSSIReach
            if emu.options.bleReachAtReader {
                reach = .atReader
            } else {
                let reading: Result<Int8, any Error>
                do { reading = .success(try await peripheral.readRSSI(phone)) } catch { reading = .failure(error) }
                reach = RSSIReach(reading: reading, model: model)
            }
            let readerReach = gatt.lock.readerReach
            let server: GATTServer
            do { server = try gatt.accept(bearer, distance: reach.distance) } catch {
                bluezLog("phone \(phone.peer) dropped: \(error)")
                phone.bearer.close()
                continue
            }
            bluezLog("phone \(phone.peer) connected to \(lockID) (security \(phone.security), \(reach), "
                     + "\(reach.isInReach(readerReach) ? "within" : "beyond") the reader's \(readerReach) m)")
            let peer = phone.peer
            Task {
                let reason = await server.waitUntilClosed()
                bluezLog("phone \(peer) disconnected: \(reason)")
            }
        }
    }
    let summary: String
    if let roster = peripheral.roster {
        let sharing = roster.rotates
            ? "\(roster.slots.count) \(roster.isExtended ? "extended advertising set\(roster.slots.count == 1 ? "" : "s")" : "legacy advertiser") taking turns every \(emu.options.bleRotationInterval)"
            : "one extended advertising set each"
        let reported = roster.availableSets.map { "controller reports \($0) advertising set\($0 == 1 ? "" : "s")" }
            ?? "no extended advertising"
        summary = "\(peripheral.adapter.name) as \(advertised.count) locks \(selected.joined(separator: ","))"
            + " (\(reported); \(sharing); security \(emu.options.bleSecurity); reach by RSSI, \(model))"
    } else {
        summary = "\(peripheral.adapter.name) \(peripheral.adapter.address) as lock \(selected[0]) \"\(names[0])\" "
            + "(advertising \(peripheral.advertisingMode.rawValue), security \(emu.options.bleSecurity); reach by RSSI, \(model))"
    }
    return BlueZPeripheralHandle(summary: summary) {
        stopping.set()
        idle.closeAll()
        await peripheral.stop()
        loop.cancel()
        _ = await loop.value
    }
}

private func bluezLog(_ line: String) {
    print("bluez: \(line)")
    fflush(nil)
}

final class StopSignal: Sendable {
    private let value = Atomic(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
