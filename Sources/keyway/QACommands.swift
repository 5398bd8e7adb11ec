import ArgumentParser
import Foundation
import KeywayAPI

// QA command line: small clients of a running `keyway serve` control API (Sources/KeywayAPI/openapi.yaml,
// through the client generated from it — APIClient.swift).
// Each command is one or two HTTP calls; the server does the work, so what these print is exactly
// what the API answered.

/// Where the server is and how to authenticate; shared by every QA command.
struct ServerOptions: ParsableArguments {
    @Option(help: "Base URL of `keyway serve` (or KEYWAY_SERVER).") var server: String?
    @Option(help: "Bearer token when the server is not on loopback (or KEYWAY_API_TOKEN).") var token: String?

    func connect() throws -> APIConnection {
        let env = ProcessInfo.processInfo.environment
        let text = server ?? env["KEYWAY_SERVER"] ?? "http://127.0.0.1:8080"
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw ValidationError("--server: '\(text)' is not an http(s) URL like http://127.0.0.1:8080")
        }
        // The transport appends each operation's path (`/v1/…`) to the base URL's path.
        let base = text.hasSuffix("/") ? URL(string: String(text.dropLast())) ?? url : url
        return APIConnection(serverURL: base, server: url.absoluteString, token: token ?? env["KEYWAY_API_TOKEN"])
    }
}

/// A path segment as error messages show it (`/v1/doors/<id>/exit`); the generated client encodes its own.
func percentPath(_ s: String) -> String {
    s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
}

// MARK: - keyway tap

struct TapCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tap",
        abstract: "Tap a lock through a running `keyway serve`: phone key, tag or PIN. Exit 0 granted, 1 denied or refused by the phone.")

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case open, officeOn = "office-on", officeOff = "office-off"
        var apiAction: Components.Schemas.Action {
            switch self {
            case .open: return .open
            case .officeOn: return .officeModeOn
            case .officeOff: return .officeModeOff
            }
        }
    }

    @Argument(help: "Lock id, e.g. main-entrance.") var lock: String
    @Option(help: "Tap with this user's phone (their most useful key for the lock).") var user: String?
    @Option(help: "Tap with this key id.") var keyID: String?
    @Option(help: "Present this NFC tag UID (hex).") var tag: String?
    @Option(help: "Enter this PIN on the keypad.") var pin: String?
    @Option(help: "open, office-on or office-off.") var action: Action = .open
    @Option(help: "Phone-to-lock distance in metres.") var distance: Double?
    @Flag(help: "Print the tap answer and the lock's state as one JSON object.") var json = false
    @OptionGroup var serverOptions: ServerOptions

    func validate() throws {
        let given = [user, keyID, tag, pin].compactMap { $0 }
        guard given.count == 1 else { throw ValidationError("give exactly one of --user, --key-id, --tag, --pin") }
        if let distance, !(0...1000).contains(distance) { throw ValidationError("--distance: 0 to 1000 metres") }
    }

    func run() async throws {
        let api = try serverOptions.connect()
        let request = Components.Schemas.TapRequest(lock: lock, user: user, keyId: keyID, tag: tag, pin: pin,
                                                    action: action.apiAction, distanceM: distance)
        let tap = try await api.call("POST /v1/taps") { try await $0.tap(body: .json(request)) }
        // The reader's side: the LED and beep the lock shows right after the decision.
        let state = try await api.call("GET /v1/locks/\(percentPath(lock))") { try await $0.getLock(path: .init(id: lock)) }
        let granted = tap.result == .granted
        if json {
            try printJSON(Answer(tap: tap, lock: state))
        } else {
            let who = [tap.user, tap.keyId].compactMap { $0 }.joined(separator: ", key ")
            let method = tap.method.rawValue
            if tap.result == .phoneRefused {
                // The phone stopped at the hello: it revealed nothing, the lock decided nothing.
                print("phone:  refused the lock — \(tap.reason ?? "?")\(tap.message.map { " (\($0))" } ?? "")  (\(method)\(who.isEmpty ? "" : ", user \(who)"))")
            } else {
                // A phone tap says how it ran: `full` exchange or `fast` repeat tap.
                let mode = tap.mode.map { ", \($0.rawValue) tap" } ?? ""
                print("phone:  \(granted ? "granted" : "denied")\(tap.reason.map { " — \($0)" } ?? "")  (\(method)\(mode)\(who.isEmpty ? "" : ", user \(who)"))")
            }
            var reader = "reader: LED \(state.feedback.led.rawValue), beep \(state.feedback.beep.rawValue), lock \(state.state.rawValue)"
            if tap.openMs > 0 { reader += ", open \(Double(tap.openMs) / 1000) s" }
            if let until = state.unlockedUntil { reader += " (until \(until))" }
            print(reader)
            print("event:  \(tap.eventId ?? "-")")
        }
        if !granted { throw ExitCode.failure }
    }

    /// `--json`: the tap answer and the lock's state after it.
    struct Answer: Encodable {
        let tap: Components.Schemas.TapResult
        let lock: Components.Schemas.Lock
    }
}

// MARK: - keyway door

struct DoorCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "door", abstract: "Drive a door controller: the door position switch or the request-to-exit button.")

    @Argument(help: "Door controller id, or the id of a lock that has one.") var id: String
    @Flag(help: "The door position switch reports open.") var open = false
    @Flag(help: "The door position switch reports closed.") var closed = false
    @Flag(help: "Press the request-to-exit button.") var exit = false
    @Flag(help: "Print the answer as JSON.") var json = false
    @OptionGroup var serverOptions: ServerOptions

    func validate() throws {
        guard [open, closed, exit].filter({ $0 }).count == 1 else { throw ValidationError("give exactly one of --open, --closed, --exit") }
    }

    func run() async throws {
        let api = try serverOptions.connect()
        let path = "POST /v1/doors/\(percentPath(id))"
        if exit {
            let answer = try await api.call(path + "/exit") { try await $0.pressExit(path: .init(id: id)) }
            if json { try printJSON(answer) } else { print("\(id): \(try describeFields(answer))") }
        } else {
            let answer = try await api.call(path + "/sensor") { try await $0.setDoorSensor(path: .init(id: id), body: .json(.init(open: open))) }
            if json { try printJSON(answer) } else { print("\(id): \(try describeFields(answer))") }
        }
    }
}

// MARK: - keyway iq

struct IQCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iq", abstract: "Drive an IQ hub: take it online or offline, sync it now, move it, activate or deactivate it.")

    @Argument(help: "IQ id, e.g. iq-lobby.") var id: String
    @Flag(help: "Bring the IQ online.") var online = false
    @Flag(help: "Take the IQ offline.") var offline = false
    @Flag(help: "Sync now: push lists, collect the locks' trails.") var sync = false
    @Option(help: "Move the IQ to X,Y or X,Y,Z (metres, site coordinates; without Z it keeps its height).") var move: String?
    @Option(help: "Activate the IQ for this directory user; the activation PIN is read from stdin (no echo on a terminal).")
    var activate: String?
    @Option(help: "Deactivate the IQ as this user (only the user who activated it may).") var deactivate: String?
    @Flag(help: "Print the answer as JSON.") var json = false
    @OptionGroup var serverOptions: ServerOptions

    func validate() throws {
        guard [online, offline, sync, move != nil, activate != nil, deactivate != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --online, --offline, --sync, --move X,Y[,Z], --activate USER, --deactivate USER")
        }
        if let move { _ = try Self.parsePosition(move) }
    }

    /// `X,Y` or `X,Y,Z` in metres. Z is nil when not given: the server then keeps the IQ's height (a
    /// ceiling IQ moved along the floor plan stays on the ceiling).
    static func parsePosition(_ s: String) throws -> (x: Double, y: Double, z: Double?) {
        let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let numbers = parts.compactMap { Double($0) }.filter(\.isFinite)
        guard (2...3).contains(parts.count), numbers.count == parts.count else {
            throw ValidationError("--move: '\(s)' is not X,Y or X,Y,Z in metres, e.g. 12.5,3 or 12.5,3,2.7")
        }
        return (numbers[0], numbers[1], numbers.count == 3 ? numbers[2] : nil)
    }

    func run() async throws {
        let api = try serverOptions.connect()
        let path = "POST /v1/iqs/\(percentPath(id))"
        if sync {
            let report = try await api.call(path + "/sync") { try await $0.syncIQ(path: .init(id: id)) }
            if json { try printJSON(report) } else { print("\(id): \(try describeFields(report))") }
            return
        }
        let answer: Components.Schemas.Iq
        if let user = activate {
            let pin = try readSecret(prompt: "Activation PIN: ", command: "keyway iq --activate", what: "activation PIN")
            answer = try await api.call(path + "/activation") {
                try await $0.activateIQ(path: .init(id: id), body: .json(.init(user: user, pin: pin)))
            }
        } else if let user = deactivate {
            answer = try await api.call("DELETE /v1/iqs/\(percentPath(id))/activation") {
                try await $0.deactivateIQ(path: .init(id: id), query: .init(user: user))
            }
        } else if let move {
            let p = try Self.parsePosition(move)
            answer = try await api.call(path + "/position") { try await $0.moveIQ(path: .init(id: id), body: .json(.init(x: p.x, y: p.y, z: p.z))) }
        } else {
            answer = try await api.call(path + "/online") { try await $0.setIQOnline(path: .init(id: id), body: .json(.init(online: online))) }
        }
        if json { try printJSON(answer) } else { print("\(id): \(try describeFields(answer))") }
    }
}

// MARK: - keyway clock

struct ClockCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clock", abstract: "Print the emulator's clock; advance or set it (simulated clock only).")

    @Option(help: "Advance the simulated clock by this many seconds.") var advance: Double?
    @Option(help: "Set the simulated clock to this RFC 3339 time.") var set: String?
    @Flag(help: "Print the answer as JSON.") var json = false
    @OptionGroup var serverOptions: ServerOptions

    func validate() throws {
        if advance != nil && set != nil { throw ValidationError("give --advance or --set, not both") }
        if let advance, !(advance >= 0 && advance.isFinite) { throw ValidationError("--advance: a number of seconds ≥ 0") }
        if let set { _ = try parseISO8601(set, option: "--set") }
    }

    func run() async throws {
        let api = try serverOptions.connect()
        let answer: Components.Schemas.Clock
        if let advance {
            answer = try await api.call("POST /v1/clock/advance") { try await $0.advanceClock(body: .json(.init(seconds: advance))) }
        } else if let set {
            answer = try await api.call("POST /v1/clock/set") { try await $0.setClock(body: .json(.init(time: set))) }
        } else {
            answer = try await api.call("GET /v1/clock") { try await $0.getClock() }
        }
        if json { try printJSON(answer); return }
        print("\(answer.now)  (\(answer.mode.rawValue) clock, \(answer.timeZone))")
    }
}
