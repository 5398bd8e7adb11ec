import ArgumentParser
import Events
import Foundation

@main
struct Keyway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyway",
        abstract: "Emulator of coworking access-control hardware: BLE locks, IQ hubs, door controllers.",
        subcommands: [Serve.self, SiteCommand.self, KeysCommand.self, PhoneCommand.self, EventsCLI.self, JournalStressCLI.self,
                      TapCLI.self, DoorCLI.self, IQCLI.self, ClockCLI.self,
                      UsersCLI.self, GroupsCLI.self, TagsCLI.self, PinsCLI.self, SnapshotsCLI.self])

    /// Exit codes: 0 success, 1 a failure or a "no" answer (with its reason on stdout/stderr),
    /// 2 a usage error — ArgumentParser's own 64 is folded into 2, as `keys verify` documents.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? AsyncParsableCommand { try await async.run() } else { try command.run() }
        } catch let e as UserFacingError {
            writeStderr(e.description)
            Foundation.exit(1)
        } catch {
            let code = exitCode(for: error)
            if code == .success { print(fullMessage(for: error)); Foundation.exit(0) }
            let message = fullMessage(for: error)
            if !message.isEmpty { writeStderr(message) }
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// A failure the user can act on: one line on stderr, exit code 1 (2 is ArgumentParser's usage error).
struct UserFacingError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func parseISO8601(_ s: String, option: String) throws -> Date {
    guard let d = RFC3339.parse(s) else {
        throw ValidationError("\(option): '\(s)' is not an RFC 3339 date-time like 2026-11-22T09:00:00Z")
    }
    return d
}

func formatISO8601(_ d: Date) -> String { RFC3339.formatSeconds(d) }

func writeStderr(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
