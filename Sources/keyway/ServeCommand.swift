import ArgumentParser
import BLE
import Emulator
import Foundation
import Logging
import Synchronization

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the emulator: devices, radio, journal, webhooks and the control API.")

    @Option(help: "Site file (YAML).") var site = "Fixtures/sites/coworking.yaml"
    @Option(help: "loopback or bluez.") var transport: String = "loopback"
    @Option(help: "HOST:PORT of the control API.") var listen = "127.0.0.1:8080"
    @Option(help: "State directory: site keys, issued keys, journal.") var data = ".keyway"
    @Option(help: "real or simulated.") var clock: String = "real"
    @Option(help: "Start of simulated time (RFC 3339).") var clockStart: String?
    @Option(help: "Webhook URL of the access core (repeatable).") var upstream: [String] = []
    @Option(help: "Webhook bodies: cloudevents (Standard Webhooks signatures) or kisi (Kisi's event shape and X-Signature; docs/KISI.md).")
    var upstreamFormat = "cloudevents"
    @Option(help: "Standard Webhooks secret (whsec_…) per --upstream, in order. Prefer KEYWAY_UPSTREAM_SECRET.") var upstreamSecret: [String] = []
    @Flag(help: "Deliver events still held by locks out of IQ reach (integration tests).") var deliverHeld = false
    @Option(help: "Append every event as NDJSON to FILE ('-' for stdout).") var eventsFile: String?
    @Option(help: "Write a btsnoop capture of every link to FILE.") var capture: String?
    @Option(help: "Bearer token required on every request (mandatory off loopback). Prefer KEYWAY_API_TOKEN.") var apiToken: String?
    @Option(help: ArgumentHelp("A host name the control API answers to besides its listen address and localhost (repeatable); any other Host header gets 421.",
                               valueName: "name")) var allowHost: [String] = []
    @Option(help: ArgumentHelp("Serve phones of other processes over Unix sockets DIR/<lock id> (L2CAP frames, the air's ATT bytes; docs/PROTOCOL.md).",
                               valueName: "dir")) var phoneSocket: String?
    @Option(help: "Phone connections each transport holds open at once (all of --phone-socket's sockets; BlueZ); more are refused.")
    var maxPhoneConnections = PhoneSocketRadio.defaultMaximumConnections
    @Option(help: "Seconds (emulator clock) after which a phone connection (socket or BlueZ) on which the phone sent nothing is closed.")
    var phoneIdleTimeout = PhoneSocketRadio.defaultIdleTimeout
    @Option(help: "BlueZ adapter (hciN).") var adapter = "hci0"
    @Option(help: "BlueZ: advertise only this lock (under the adapter's own address).") var bleLock: String?
    @Option(help: "BlueZ: the locks advertised, comma-separated (default: every lock of the site, each under its own address).")
    var bleLocks: String?
    @Option(help: "BlueZ: advertising commands: automatic (extended sets where the controller has them), legacy (one advertiser, the locks in turn) or extended.")
    var bleAdvertising = "automatic"
    @Option(help: "BlueZ: milliseconds each lock stays on the air when there are more locks than advertising sets (20-10000).")
    var bleRotationMs = 500
    @Option(help: "BlueZ: use at most N extended advertising sets (default: all the controller reports); the other locks take turns.")
    var bleAdvertisingSets: Int?
    @Option(help: "BlueZ: security level required of phones: low, medium (Just Works pairing), high or fips.") var security = "low"
    @Option(name: .customLong("ble-rssi-at-1m"), help: ArgumentHelp("BlueZ: RSSI (dBm) of a phone 1 m from the lock, for the reach model (HARDWARE.md).", valueName: "dBm"))
    var bleRSSIAtOneMetre = PathLossModel.defaultRSSIAtOneMetre
    @Option(help: "BlueZ: path-loss exponent of the reach model (2 free space, ~3 indoors).") var blePathLossExponent = PathLossModel.defaultExponent
    @Option(help: ArgumentHelp("BlueZ: how a phone's distance is known: rssi (HCI Read RSSI through the path-loss model; an unreadable RSSI is out of reach) or at-reader (every phone at the reader, reach not checked: for controllers without Read RSSI, such as btvirt).", valueName: "rssi|at-reader"))
    var bleReach = "rssi"
    @Flag(help: "BlueZ: start even though bluetoothd runs (only if it does not serve this adapter).") var allowBluetoothd = false
    @Option(help: ArgumentHelp("Also serve the Kisi-compatible API (docs/KISI.md) at the root of HOST:PORT.", valueName: "host:port")) var kisiListen: String?
    @Option(help: "API key the Kisi-compatible API asks for (Authorization: KISI-LOGIN <key>); one is generated and printed if not given. Prefer KEYWAY_KISI_API_KEY.")
    var kisiApiKey: String?

    func run() async throws {
        var o = EmulatorOptions(sitePath: site)
        guard let t = TransportKind(rawValue: transport) else { throw ValidationError("--transport: loopback or bluez") }
        guard let c = ClockMode(rawValue: clock) else { throw ValidationError("--clock: real or simulated") }
        let parts = listen.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 2, let port = Int(parts.last!), (0...65535).contains(port) else { throw ValidationError("--listen: HOST:PORT") }
        o.listenHost = parts.dropLast().joined(separator: ":")
        o.listenPort = port
        o.transport = t
        o.clock = c
        o.clockStart = try clockStart.map { try parseISO8601($0, option: "--clock-start") }
        o.dataDir = data
        let env = ProcessInfo.processInfo.environment
        var secrets = upstreamSecret
        if secrets.isEmpty, let s = env["KEYWAY_UPSTREAM_SECRET"] { secrets = [s] }
        guard secrets.count == upstream.count || (secrets.count == 1 && upstream.count >= 1) else {
            throw ValidationError("--upstream-secret: one per --upstream (or one for all)")
        }
        guard let format = UpstreamFormat(rawValue: upstreamFormat) else { throw ValidationError("--upstream-format: cloudevents or kisi") }
        o.upstreamFormat = format
        if format == .kisi, secrets.contains(where: \.isEmpty) { throw ValidationError("--upstream-secret: the Kisi signature key must not be empty") }
        o.upstreams = upstream.enumerated().map { UpstreamEndpoint(url: $0.element, secret: secrets.count == 1 ? secrets[0] : secrets[$0.offset]) }
        o.deliverHeld = deliverHeld
        o.eventsFile = eventsFile
        o.capturePath = capture
        o.apiToken = apiToken ?? env["KEYWAY_API_TOKEN"]
        if let token = o.apiToken {
            // An empty token would admit "Bearer " — refuse it rather than guess (never echo the value).
            guard !token.isEmpty else {
                throw ValidationError("\(apiToken != nil ? "--api-token" : "KEYWAY_API_TOKEN") is empty: give a token, or leave it unset on loopback")
            }
            guard token.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f }) else {
                throw ValidationError("\(apiToken != nil ? "--api-token" : "KEYWAY_API_TOKEN") must be printable ASCII without spaces")
            }
        }
        for name in allowHost where name.isEmpty || name.contains(where: { $0 == " " || $0 == "/" || $0 == "," }) {
            throw ValidationError("--allow-host \"\(name)\": one host name per option, without scheme or path")
        }
        o.allowedHosts = allowHost
        if !o.isLoopbackBind && o.apiToken == nil {
            throw ValidationError("--listen \(listen) is not loopback: set --api-token or KEYWAY_API_TOKEN")
        }
        o.adapter = adapter
        if bleLock != nil && bleLocks != nil { throw ValidationError("--ble-lock and --ble-locks: give one of them") }
        if let one = bleLock { o.bleLocks = [one] }
        if let list = bleLocks {
            let ids = list.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard !ids.contains(where: \.isEmpty) else { throw ValidationError("--ble-locks: lock IDs separated by commas, none empty") }
            guard Set(ids).count == ids.count else { throw ValidationError("--ble-locks: a lock is listed twice") }
            o.bleLocks = ids
        }
        guard let advertising = LEAdvertisingMode(rawValue: bleAdvertising) else {
            throw ValidationError("--ble-advertising: automatic, legacy or extended")
        }
        o.bleAdvertising = advertising
        guard (20...10_000).contains(bleRotationMs) else { throw ValidationError("--ble-rotation-ms: 20 to 10000") }
        o.bleRotationInterval = .milliseconds(bleRotationMs)
        if let n = bleAdvertisingSets {
            guard (1...240).contains(n) else { throw ValidationError("--ble-advertising-sets: 1 to 240") }
            o.bleAdvertisingSets = n
        }
        guard let level = BlueZSecurityLevel(name: security) else { throw ValidationError("--security: low, medium, high or fips") }
        o.bleSecurity = level
        o.allowBluetoothd = allowBluetoothd
        guard maxPhoneConnections >= 1 else { throw ValidationError("--max-phone-connections must be at least 1") }
        guard phoneIdleTimeout > 0, phoneIdleTimeout.isFinite else { throw ValidationError("--phone-idle-timeout must be a number of seconds > 0") }
        o.maxPhoneConnections = maxPhoneConnections
        o.phoneIdleTimeout = phoneIdleTimeout
        o.blePathLoss = PathLossModel(rssiAtOneMetre: bleRSSIAtOneMetre, exponent: blePathLossExponent)
        guard ["rssi", "at-reader"].contains(bleReach) else { throw ValidationError("--ble-reach: rssi or at-reader, not '\(bleReach)'") }
        o.bleReachAtReader = bleReach == "at-reader"
        if let why = o.blePathLoss.validationError { throw ValidationError("--ble-rssi-at-1m / --ble-path-loss-exponent: \(why)") }

        var kisi: (host: String, port: Int, key: String, generated: Bool)? = nil
        if let kl = kisiListen {
            let kp = kl.split(separator: ":", omittingEmptySubsequences: false)
            guard kp.count >= 2, let port = Int(kp.last!), (0...65535).contains(port) else { throw ValidationError("--kisi-listen: HOST:PORT") }
            let given = kisiApiKey ?? env["KEYWAY_KISI_API_KEY"]
            let key = given ?? KisiServer.generateKey()
            guard !key.isEmpty, key.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f }) else {
                throw ValidationError("--kisi-api-key must be printable ASCII without spaces")
            }
            kisi = (kp.dropLast().joined(separator: ":"), port, key, given == nil)
        } else if kisiApiKey != nil {
            throw ValidationError("--kisi-api-key needs --kisi-listen HOST:PORT")
        }

        let started = Date()
        let emu: Emulator
        do { emu = try await Emulator.start(o) } catch { throw UserFacingError("keyway serve: \(error)") }
        let bluez: BlueZPeripheralHandle?
        do { bluez = try await startBlueZIfRequested(emu) } catch {
            await emu.shutdown()
            throw UserFacingError("keyway serve: \(error)")
        }

        var phoneSockets: PhoneSocketRadio? = nil
        if let dir = phoneSocket {
            var pc = PhoneSocketRadio.Configuration(directory: dir)
            pc.maximumConnections = o.maxPhoneConnections
            pc.idleTimeout = o.phoneIdleTimeout
            do { phoneSockets = try PhoneSocketRadio.start(emu, pc, log: { line in print(line); fflush(nil) }) } catch {
                await bluez?.stop()
                await emu.shutdown()
                throw UserFacingError("keyway serve: \(error)")
            }
        }

        let opts = o
        let phoneSocketLine = phoneSockets.map { r in
            "\n  phones     \(r.configuration.directory)/<lock id>  (\(r.paths.count) sockets, at most \(r.configuration.maximumConnections) connections, idle timeout \(Int(r.configuration.idleTimeout)) s)"
        } ?? ""
        // The Kisi-compatible API first, so the banner (printed when the control API is up) can give its port.
        let kisiPort = Locked<Int?>(nil)
        let kisiReady = AsyncStream<Void>.makeStream()
        let kisiServer = kisi.map { k in
            Task {
                defer { kisiReady.continuation.finish() }
                try await KisiServer.run(emu, host: k.host, port: k.port, apiKey: k.key) { port in
                    kisiPort.withLock { $0 = port }
                    kisiReady.continuation.finish()
                }
            }
        }
        if let kisiServer, let k = kisi {
            for await _ in kisiReady.stream {}
            if kisiPort.withLock({ $0 }) == nil {
                let why = await kisiServer.result
                phoneSockets?.close()
                await bluez?.stop()
                await emu.shutdown()
                if case .failure(let e) = why { throw UserFacingError("keyway serve: --kisi-listen \(k.host):\(k.port): \(e)") }
                throw UserFacingError("keyway serve: --kisi-listen \(k.host):\(k.port) stopped")
            }
        }
        let kisiLine = kisi.map { k in
            // A key the user gave is not echoed (it may be a real integration's); a generated one must be, to be usable.
            "\n  kisi api   http://\(k.host):\(kisiPort.withLock { $0 } ?? k.port)  (Authorization: KISI-LOGIN \(k.generated ? k.key : "<--kisi-api-key>"); docs/KISI.md)"
        } ?? ""
        let server = Task {
            try await ControlServer.run(emu) { port in
                let ms = Int(Date().timeIntervalSince(started) * 1000)
                print("""
                keyway serve — site \(emu.config.siteID) (\(emu.config.name)), \(emu.config.locks.count) locks, \(emu.config.iqs.count) IQs, \(emu.config.doorControllers.count) door controllers
                  transport  \(opts.transport.rawValue)\(bluez.map { " on \($0.summary)" } ?? "")
                  clock      \(opts.clock.rawValue) (\(formatISO8601(emu.clock.now())))
                  data       \(opts.dataDir)  (journal.sqlite, state.sqlite, keys/)
                  upstream   \(opts.upstreams.isEmpty ? "none" : opts.upstreams.map(\.url).joined(separator: ", "))\(opts.eventsFile.map { " + NDJSON \($0)" } ?? "")
                  api        http://\(opts.listenHost):\(port)  (OpenAPI at /openapi.yaml)\(opts.apiToken != nil ? ", bearer token required" : "")
                  live view  http://\(opts.listenHost):\(port)/\(phoneSocketLine)\(kisiLine)
                ready in \(ms) ms. Try:
                  curl -s --json '{"user":"\(emu.config.users.first?.id ?? "u-1")","locks":["\(emu.config.locks.first?.id ?? "lock")"]}' localhost:\(port)/v1/keys
                  curl -s --json '{"lock":"\(emu.config.locks.first?.id ?? "lock")","user":"\(emu.config.users.first?.id ?? "u-1")"}' localhost:\(port)/v1/taps
                  keyway tap \(emu.config.locks.first?.id ?? "lock") --user \(emu.config.users.first?.id ?? "u-1") --server http://127.0.0.1:\(port)
                """)
                fflush(nil)
            }
        }
        await waitForTerminationSignal()
        print("keyway serve: shutting down")
        server.cancel()
        kisiServer?.cancel()
        _ = try? await server.value
        _ = try? await kisiServer?.value
        phoneSockets?.close()
        await bluez?.stop()
        await emu.shutdown()
    }
}

/// Suspends until SIGINT or SIGTERM.
func waitForTerminationSignal() async {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        let once = OnceFlag()
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { if once.fire() { c.resume() } }
            s.resume()
            sources.append(s)
        }
        SignalSources.keep(sources)
    }
}

final class OnceFlag: Sendable {
    private let fired = Atomic(false)
    /// True the first time only.
    func fire() -> Bool { !fired.exchange(true, ordering: .acquiringAndReleasing) }
}

/// Signal sources live for the process (a released source stops delivering).
enum SignalSources {
    static let kept = Locked<[any DispatchSourceSignal]>([])
    static func keep(_ s: [any DispatchSourceSignal]) { kept.withLock { $0.append(contentsOf: s) } }
}
