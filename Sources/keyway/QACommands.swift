import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// QA command line: small clients of a running `keyway serve` control API (docs/openapi.yaml).
// Each command is one or two HTTP calls; the server does the work, so what these print is exactly
// what the API answered.

/// Where the server is and how to authenticate; shared by every QA command.
struct ServerOptions: ParsableArguments {
    @Option(help: "Base URL of `keyway serve` (or KEYWAY_SERVER).") var server: String?
    @Option(help: "Bearer token when the server is not on loopback (or KEYWAY_API_TOKEN).") var token: String?

    func client() throws -> ControlAPIClient {
        let env = ProcessInfo.processInfo.environment
        let text = server ?? env["KEYWAY_SERVER"] ?? "http://127.0.0.1:8080"
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw ValidationError("--server: '\(text)' is not an http(s) URL like http://127.0.0.1:8080")
        }
        return ControlAPIClient(base: url, token: token ?? env["KEYWAY_API_TOKEN"])
    }
}

/// A minimal JSON-over-HTTP client of the control API. A 4xx/5xx answer becomes a UserFacingError
/// carrying the server's error message and the field it names.
struct ControlAPIClient {
    let base: URL
    let token: String?
    /// Answers are small JSON documents; anything bigger is not our server.
    static let maxResponse = 4 * 1024 * 1024

    func call(_ method: String, _ path: String, _ body: [String: Any]? = nil) async throws -> Any {
        let text = base.absoluteString.hasSuffix("/") ? String(base.absoluteString.dropLast()) : base.absoluteString
        guard let url = URL(string: text + path) else { throw UserFacingError("bad request path \(path)") }
        var req = URLRequest(url: url, timeoutInterval: 30)
        req.httpMethod = method
        req.setValue("application/json", forHTTPHeaderField: "Accept")
        if let token { req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            req.httpBody = try JSONSerialization.data(withJSONObject: body)
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if method == "POST" {
            req.httpBody = Data()
        }
        let (data, status) = try await send(req)
        guard data.count <= Self.maxResponse else { throw UserFacingError("\(method) \(path): answer over \(Self.maxResponse) bytes") }
        let object = data.isEmpty ? nil : try? JSONSerialization.jsonObject(with: data)
        guard (200..<300).contains(status) else {
            if let e = (object as? [String: Any])?["error"] as? [String: Any] {
                let message = e["message"] as? String ?? "error"
                let field = (e["field"] as? String).map { " (field \($0))" } ?? ""
                throw UserFacingError("\(method) \(path): HTTP \(status) \(e["code"] as? String ?? ""): \(message)\(field)")
            }
            throw UserFacingError("\(method) \(path): HTTP \(status)")
        }
        guard let object else { throw UserFacingError("\(method) \(path): answer is not JSON") }
        return object
    }

    func object(_ method: String, _ path: String, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        guard let o = try await call(method, path, body) as? [String: Any] else { throw UserFacingError("\(method) \(path): answer is not a JSON object") }
        return o
    }

    private func send(_ req: URLRequest) async throws -> (Data, Int) {
        let where_ = base.absoluteString
        return try await withCheckedThrowingContinuation { cont in
            let task = URLSession.shared.dataTask(with: req) { data, response, error in
                if let error {
                    cont.resume(throwing: UserFacingError("cannot reach keyway serve at \(where_): \(error.localizedDescription)"))
                    return
                }
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                cont.resume(returning: (data ?? Data(), status))
            }
            task.resume()
        }
    }
}

func percentPath(_ s: String) -> String {
    s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
}

func printJSON(_ o: Any) {
    let data = (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .prettyPrinted])) ?? Data("{}".utf8)
    print(String(decoding: data, as: UTF8.self))
}

/// `key=value` pairs, sorted, for one-line human output of an API object.
func describeFields(_ o: [String: Any]) -> String {
    o.sorted { $0.key < $1.key }.map { k, v -> String in
        if v is NSNull { return "\(k)=-" }
        if let d = v as? [String: Any] { return "\(k)={\(describeFields(d))}" }
        if let a = v as? [Any] { return "\(k)=[\(a.map { "\($0)" }.joined(separator: ","))]" }
        // JSON booleans arrive as NSNumber of ObjC type "c" (char); print them as true/false, not 1/0.
        if let n = v as? NSNumber {
            return String(cString: n.objCType) == "c" ? "\(k)=\(n.boolValue)" : "\(k)=\(n)"
        }
        if let b = v as? Bool { return "\(k)=\(b)" }
        return "\(k)=\(v)"
    }.joined(separator: " ")
}

// MARK: - keyway tap

struct TapCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tap",
        abstract: "Tap a lock through a running `keyway serve`: phone key, tag or PIN. Exit 0 granted, 1 denied or refused by the phone.")

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case open, officeOn = "office-on", officeOff = "office-off"
        var apiName: String {
            switch self {
            case .open: return "open"
            case .officeOn: return "office_mode_on"
            case .officeOff: return "office_mode_off"
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
        let api = try serverOptions.client()
        var body: [String: Any] = ["lock": lock, "action": action.apiName]
        if let user { body["user"] = user }
        if let keyID { body["key_id"] = keyID }
        if let tag { body["tag"] = tag }
        if let pin { body["pin"] = pin }
        if let distance { body["distance_m"] = distance }
        let tap = try await api.object("POST", "/v1/taps", body)
        // The reader's side: the LED and beep the lock shows right after the decision.
        let state = try await api.object("GET", "/v1/locks/\(percentPath(lock))")
        let result = tap["result"] as? String ?? "?"
        let granted = result == "granted"
        if json {
            printJSON(["tap": tap, "lock": state])
        } else {
            let reason = tap["reason"] as? String
            let openMS = tap["open_ms"] as? Int ?? 0
            let who = [tap["user"] as? String, tap["key_id"] as? String].compactMap { $0 }.joined(separator: ", key ")
            let method = tap["method"] as? String ?? "?"
            if result == "phone_refused" {
                // The phone stopped at the hello: it revealed nothing, the lock decided nothing.
                print("phone:  refused the lock — \(reason ?? "?")\((tap["message"] as? String).map { " (\($0))" } ?? "")  (\(method)\(who.isEmpty ? "" : ", user \(who)"))")
            } else {
                print("phone:  \(granted ? "granted" : "denied")\(reason.map { " — \($0)" } ?? "")  (\(method)\(who.isEmpty ? "" : ", user \(who)"))")
            }
            let feedback = state["feedback"] as? [String: Any] ?? [:]
            let led = feedback["led"] as? String ?? "?", beep = feedback["beep"] as? String ?? "?"
            var reader = "reader: LED \(led), beep \(beep), lock \(state["state"] as? String ?? "?")"
            if openMS > 0 { reader += ", open \(Double(openMS) / 1000) s" }
            if let until = state["unlocked_until"] as? String { reader += " (until \(until))" }
            print(reader)
            print("event:  \(tap["event_id"] as? String ?? "-")")
        }
        if !granted { throw ExitCode.failure }
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
        let api = try serverOptions.client()
        let path = "/v1/doors/\(percentPath(id))"
        let answer = exit ? try await api.object("POST", path + "/exit") : try await api.object("POST", path + "/sensor", ["open": open])
        if json { printJSON(answer) } else { print("\(id): \(describeFields(answer))") }
    }
}

// MARK: - keyway iq

struct IQCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iq", abstract: "Drive an IQ hub: take it online or offline, sync it now, or move it.")

    @Argument(help: "IQ id, e.g. iq-lobby.") var id: String
    @Flag(help: "Bring the IQ online.") var online = false
    @Flag(help: "Take the IQ offline.") var offline = false
    @Flag(help: "Sync now: push lists, collect the locks' trails.") var sync = false
    @Option(help: "Move the IQ to X,Y (metres, site coordinates).") var move: String?
    @Flag(help: "Print the answer as JSON.") var json = false
    @OptionGroup var serverOptions: ServerOptions

    func validate() throws {
        guard [online, offline, sync, move != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --online, --offline, --sync, --move X,Y")
        }
        if let move { _ = try Self.parseXY(move) }
    }

    static func parseXY(_ s: String) throws -> (Double, Double) {
        let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, let x = Double(parts[0]), let y = Double(parts[1]), x.isFinite, y.isFinite else {
            throw ValidationError("--move: '\(s)' is not X,Y in metres, e.g. 12.5,3")
        }
        return (x, y)
    }

    func run() async throws {
        let api = try serverOptions.client()
        let path = "/v1/iqs/\(percentPath(id))"
        let answer: [String: Any]
        if let move {
            let (x, y) = try Self.parseXY(move)
            answer = try await api.object("POST", path + "/position", ["x": x, "y": y])
        } else if sync {
            answer = try await api.object("POST", path + "/sync")
        } else {
            answer = try await api.object("POST", path + "/online", ["online": online])
        }
        if json { printJSON(answer) } else { print("\(id): \(describeFields(answer))") }
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
        let api = try serverOptions.client()
        let answer: [String: Any]
        if let advance {
            answer = try await api.object("POST", "/v1/clock/advance", ["seconds": advance])
        } else if let set {
            answer = try await api.object("POST", "/v1/clock/set", ["time": set])
        } else {
            answer = try await api.object("GET", "/v1/clock")
        }
        if json { printJSON(answer); return }
        print("\(answer["now"] as? String ?? "?")  (\(answer["mode"] as? String ?? "?") clock, \(answer["time_zone"] as? String ?? "?"))")
    }
}
