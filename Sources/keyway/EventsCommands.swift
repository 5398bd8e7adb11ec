import ArgumentParser
import Events
import Foundation

struct EventsCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "List or follow the event journal, with each event's stage.")
    @Option(help: "State directory of `keyway serve`.") var data = ".keyway"
    @Flag(help: "Keep printing new events.") var follow = false
    @Flag(help: "One CloudEvent JSON object per line.") var json = false
    @Option(help: "Event type, e.g. access.denied (repeatable).") var type: [String] = []
    @Option(help: "Only this lock.") var lock: String?
    @Option(help: "Only events at or after this time (RFC 3339).") var since: String?
    @Option(help: "Stage: held, collected, delivered, dead_lettered (repeatable).") var stage: [String] = []
    @Option(help: "At most this many events (without --follow).") var limit = 100

    func run() async throws {
        let path = data + "/journal.sqlite"
        guard FileManager.default.fileExists(atPath: path) else { throw UserFacingError("no journal at \(path) (run `keyway serve --data \(data)` first)") }
        let options = EventsCommandOptions(follow: follow, json: json, types: type, lock: lock, since: since, stages: stage, limit: limit)
        let journal = try EventJournal(path: path)
        try await EventsCommand.run(journal: journal, options: options) { line in print(line); fflush(nil) }
        try await journal.close()
    }
}
