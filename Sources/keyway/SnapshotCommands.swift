import ArgumentParser
import Foundation
import KeywayAPI

// `keyway snapshots …` (issue 13 item 6): save the world of a running `keyway serve` and return to it,
// through the generated client (APIClient.swift). The snapshots live in the server's data directory.

struct SnapshotsCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshots", abstract: "Save the whole emulated world and return to it: list, save, show, restore, delete.",
        subcommands: [List.self, Save.self, Show.self, Restore.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The snapshots in the server's data directory.")
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let all = try await api.call("GET /v1/snapshots") { try await $0.listSnapshots() }
            if output.json { try printJSON(all); return }
            for s in all { print("\(s.id): \(try describeFields(s))") }
        }
    }

    struct Save: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Save the world now (devices, directory, keys, clock) under an id.")
        @Argument(help: "Snapshot id (default: snap-<8 hex digits>).") var id: String?
        @Option(help: "Free text for people.") var description: String?
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let saved = try await api.call("POST /v1/snapshots") {
                try await $0.createSnapshot(body: .json(.init(id: id, description: description)))
            }
            try output.show(saved, id: saved.id)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One snapshot.")
        @Argument(help: "Snapshot id.") var id: String
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let s = try await api.call("GET /v1/snapshots/\(percentPath(id))") { try await $0.getSnapshot(path: .init(id: id)) }
            try output.show(s, id: id)
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Return the world to a snapshot. The journal keeps every event; one emulator.snapshot_restored event marks the jump.")
        @Argument(help: "Snapshot id.") var id: String
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let r = try await api.call("POST /v1/snapshots/\(percentPath(id))/restore") { try await $0.restoreSnapshot(path: .init(id: id)) }
            if output.json { try printJSON(r); return }
            print("\(id): restored, clock \(r.time)\(r.clockRestored ? "" : " (real clock: not set back)"), events after \(r.eventsAfter)")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a snapshot.")
        @Argument(help: "Snapshot id.") var id: String
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let r = try await api.call("DELETE /v1/snapshots/\(percentPath(id))") { try await $0.deleteSnapshot(path: .init(id: id)) }
            try output.show(r, id: id)
        }
    }
}

// MARK: - The snapshot operations' answers

extension Components.Responses.SnapshotUnreadable: APIErrorResponse {
    static var status: Int { 409 }
    var error: Components.Schemas._Error { switch body { case .json(let e): e } }
}

extension Operations.CreateSnapshot.Output.Conflict: APIErrorResponse {
    static var status: Int { 409 }
    var error: Components.Schemas._Error { switch body { case .json(let e): e } }
}

extension Operations.ListSnapshots.Output: APIOutput {
    var outcome: APIOutcome<[Components.Schemas.Snapshot]> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.CreateSnapshot.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Snapshot> {
        switch self {
        case .created(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.GetSnapshot.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Snapshot> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.DeleteSnapshot.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.SnapshotDeleted> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.RestoreSnapshot.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.SnapshotRestoreResult> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}
