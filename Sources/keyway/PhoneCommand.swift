import ArgumentParser
import BLE
import Emulator
import Foundation
import KeywayCrypto
import MobileKey

/// A phone from the command line: taps a lock over a real radio (BlueZ), as a phone app would. For
/// hardware engineers checking a lock on an adapter, and for `make hil`.
struct PhoneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "phone", abstract: "Act as a phone: tap a lock over Bluetooth LE.",
                                                    subcommands: [Tap.self])

    struct Tap: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tap a Keyway lock over BlueZ with a digital key. Exit 0 granted, 1 denied or failed (with the reason), 2 usage.")

        @Option(help: "Local BlueZ adapter the phone uses (hciN).") var adapter = "hci0"
        @Option(help: "The lock's Bluetooth address (XX:XX:XX:XX:XX:XX).") var address: String
        @Option(help: "The lock's address type: public or random.") var addressType = "public"
        @Option(help: "The digital key: the credential's COSE_Sign1 bytes (raw, or base64 as the control API returns it).") var credential: String
        @Option(help: "The phone's private key (PKCS#8 PEM) — the key the credential's cnf names.") var holderKey: String
        @Option(help: "The site issuer's public key (SPKI PEM, e.g. DATA/keys/issuer.pub.pem): the phone trusts locks it certified.") var sitePublicKey: String
        @Option(help: "Site id the lock must belong to.") var site: String
        @Option(help: "open, office_mode_on or office_mode_off.") var action = "open"
        @Option(help: "Link security level to request: low, medium (Just Works pairing), high or fips.") var security = "low"
        @Option(help: "Seconds to wait for the connection.") var connectTimeout: Double = 20
        @Option(help: "Seconds to wait for the lock's result after the presentation.") var resultTimeout: Double = 10
        @Option(help: "The site's signed revocation list (`signed` of GET /v1/revocation-list: base64, or the raw COSE_Sign1 bytes); the phone refuses a lock whose certificate it names.") var revocationList: String?
        @Option(help: "A file keeping this phone's FAST keys between taps (JSON; created when missing, holds secret keys). Without it every tap is a full exchange.") var fastKeys: String?
        @Flag(help: "One JSON object on stdout.") var json = false

        func validate() throws {
            if TapAction(name: action) == nil { throw ValidationError("--action: open, office_mode_on or office_mode_off") }
            if addressType != "public" && addressType != "random" { throw ValidationError("--address-type: public or random") }
            if BlueZSecurityLevel(name: security) == nil { throw ValidationError("--security: low, medium, high or fips") }
            if !(0.1...300).contains(connectTimeout) { throw ValidationError("--connect-timeout: 0.1 to 300 seconds") }
            if !(0.1...300).contains(resultTimeout) { throw ValidationError("--result-timeout: 0.1 to 300 seconds") }
        }

        func run() async throws {
            let started = ContinuousClock.now
            let act = TapAction(name: action)!, level = BlueZSecurityLevel(name: security)!
            let lock: BlueZAddress
            do { lock = try BlueZAddress(address, kind: addressType == "random" ? .leRandom : .lePublic) }
            catch { throw ValidationError("--address: \(error)") }
            let credentialBytes = try readCredential(credential)
            let holder: P256.PrivateKey
            do { holder = try P256.PrivateKey(pem: try readText(holderKey, option: "--holder-key")) }
            catch let e as UserFacingError { throw e } catch { throw UserFacingError("--holder-key \(holderKey): not a P-256 private key PEM: \(error)") }
            let issuer: P256.PublicKey
            do { issuer = try P256.PublicKey(pem: try readText(sitePublicKey, option: "--site-public-key")) }
            catch let e as UserFacingError { throw e } catch { throw UserFacingError("--site-public-key \(sitePublicKey): not a P-256 public key PEM: \(error)") }
            let keyring = try fastKeys.map { try loadKeyring($0) }
            let revocations = try revocationList.map { path -> RevocationList in
                // Only a list the site issuer signed, for this site, is taken.
                do { return try RevocationList(verifying: try readCredential(path), issuers: TrustedIssuers([issuer]), siteID: site) }
                catch { throw UserFacingError("--revocation-list \(path): not a revocation list of site \(site) signed by --site-public-key: \(error)") }
            }
            let phone = TapPhone(credential: credentialBytes, holderKey: holder, siteID: site, trustedIssuers: TrustedIssuers([issuer]),
                                 fastKeys: keyring, revocations: revocations)

            let connection: BlueZCentral.Connection
            do {
                connection = try await BlueZCentral.connect(to: lock, adapter: adapter, security: level,
                                                            timeout: .milliseconds(Int(connectTimeout * 1000)))
            } catch let e as BlueZError { throw UserFacingError("keyway phone tap: \(e)") }
            let connected = ContinuousClock.now
            let client = try GATTClient(bearer: connection.bearer)
            defer { client.close() }

            let outcome: PhoneTap.Outcome
            do {
                outcome = try await PhoneTap.run(client: client, phone: phone, action: act, now: Date(),
                                                 resultTimeout: .milliseconds(Int(resultTimeout * 1000)))
            } catch let e as PhoneTapError {
                if let keyring, let fastKeys { try saveKeyring(keyring, fastKeys) }   // a counter sent is spent
                throw UserFacingError("keyway phone tap: \(e)")
            } catch {
                if let keyring, let fastKeys { try saveKeyring(keyring, fastKeys) }
                throw UserFacingError("keyway phone tap: GATT exchange with \(lock) failed: \(error)")
            }
            if let keyring, let fastKeys { try saveKeyring(keyring, fastKeys) }
            let ms: (Duration) -> Double = { Double($0.components.seconds) * 1000 + Double($0.components.attoseconds) / 1e15 }
            let connectMS = ms(connected - started), setupMS = ms(outcome.timing.setup), exchangeMS = ms(outcome.timing.exchange)
            let totalMS = ms(ContinuousClock.now - started)
            let r = outcome.result
            if json {
                let answer = TapAnswer(result: r.granted ? "granted" : "denied", reason: r.reason, action: act.name, address: "\(lock)",
                                       mode: outcome.mode.rawValue, fastFallback: outcome.fastFallback?.rawValue,
                                       security: "\(connection.security)", mtu: outcome.mtu, openMS: Int(r.openMilliseconds),
                                       timing: .init(connect: round3(connectMS), setup: round3(setupMS), tap: round3(exchangeMS), total: round3(totalMS)))
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(answer), as: UTF8.self))
            } else if r.granted {
                print("granted: \(act.name) at \(lock), unlocked for \(r.openMilliseconds) ms (\(outcome.mode.rawValue) tap; connect \(fmt(connectMS)) ms, setup \(fmt(setupMS)) ms, tap \(fmt(exchangeMS)) ms; MTU \(outcome.mtu), security \(connection.security))")
            } else {
                print("denied: \(r.reason ?? "no reason given") (action \(act.name) at \(lock), \(outcome.mode.rawValue) tap; connect \(fmt(connectMS)) ms, setup \(fmt(setupMS)) ms, tap \(fmt(exchangeMS)) ms)")
            }
            if !r.granted { throw ExitCode(1) }
        }

        /// `--json`: one line, keys sorted; `reason` is null when granted.
        struct TapAnswer: Encodable {
            struct Timing: Encodable { let connect, setup, tap, total: Double }
            let result: String
            let reason: String?
            let action: String
            let address: String
            /// `full` or `fast`; `fast_fallback` says why a phone with FAST keys ran in full (null otherwise).
            let mode: String
            let fastFallback: String?
            let security: String
            let mtu: Int
            let openMS: Int
            let timing: Timing

            enum CodingKeys: String, CodingKey {
                case result, reason, action, address, mode, security, mtu
                case fastFallback = "fast_fallback", openMS = "open_ms", timing = "timing_ms"
            }

            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(result, forKey: .result)
                try c.encode(reason, forKey: .reason)  // null, not left out
                try c.encode(action, forKey: .action)
                try c.encode(address, forKey: .address)
                try c.encode(mode, forKey: .mode)
                try c.encode(fastFallback, forKey: .fastFallback)  // null, not left out
                try c.encode(security, forKey: .security)
                try c.encode(mtu, forKey: .mtu)
                try c.encode(openMS, forKey: .openMS)
                try c.encode(timing, forKey: .timing)
            }
        }

        /// The FAST keys file: a JSON array of `TapFastKeyring.Entry`; missing means none yet.
        private func loadKeyring(_ path: String) throws -> TapFastKeyring {
            guard FileManager.default.fileExists(atPath: path) else { return TapFastKeyring() }
            guard let data = FileManager.default.contents(atPath: path), data.count <= 1_048_576 else {
                throw UserFacingError("--fast-keys \(path): cannot read (or over 1 MiB)")
            }
            do { return TapFastKeyring(try JSONDecoder().decode([TapFastKeyring.Entry].self, from: data)) }
            catch { throw UserFacingError("--fast-keys \(path): not a FAST keys file (\(error.localizedDescription)); delete it to start afresh") }
        }

        /// Written to a temporary file and renamed, owner-only: it holds secret keys.
        private func saveKeyring(_ keyring: TapFastKeyring, _ path: String) throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let tmp = path + ".new"
            guard FileManager.default.createFile(atPath: tmp, contents: try encoder.encode(keyring.all), attributes: [.posixPermissions: 0o600]) else {
                throw UserFacingError("--fast-keys \(path): cannot write \(tmp)")
            }
            _ = try FileManager.default.replaceItemAt(URL(fileURLWithPath: path), withItemAt: URL(fileURLWithPath: tmp))
        }

        private func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
        private func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

        private func readText(_ path: String, option: String) throws -> String {
            guard let data = FileManager.default.contents(atPath: path) else { throw UserFacingError("\(option) \(path): cannot read") }
            guard data.count <= 16_384 else { throw UserFacingError("\(option) \(path): \(data.count) bytes is too large for a PEM key") }
            return String(decoding: data, as: UTF8.self)
        }

        /// Raw COSE bytes (as `keys issue --out` writes), or their base64 (the control API's `credential`,
        /// or `signed` of a revocation list).
        private func readCredential(_ path: String) throws -> [UInt8] {
            let bytes = try readKeyFile(path)
            let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let base64Alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
            if !text.isEmpty, text.allSatisfy({ base64Alphabet.contains($0) }), let decoded = Data(base64Encoded: text) {
                return Array(decoded)
            }
            return bytes
        }
    }
}
