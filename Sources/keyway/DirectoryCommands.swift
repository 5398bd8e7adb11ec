import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import KeywayAPI

// QA commands for the access core's directory (issue 13): users, access groups, fobs and PINs of a running
// `keyway serve`, through the generated client (APIClient.swift). A change makes a new access-list version
// at once; locks get it at their IQ's next sync (`keyway iq ID --sync` to hurry it).

/// What every directory command prints: one `id: key=value …` line per item, or the API's JSON.
struct DirectoryOutput: ParsableArguments {
    @Flag(help: "Print the answer as JSON.") var json = false

    func show<T: Encodable>(_ value: T, id: String) throws {
        if json { try printJSON(value) } else { print("\(id): \(try describeFields(value))") }
    }

    func show(users: [Components.Schemas.User]) throws {
        if json { try printJSON(users); return }
        for u in users { print("\(u.id): \(try describeFields(u))") }
    }

    func show(groups: [Components.Schemas.Group]) throws {
        if json { try printJSON(groups); return }
        for g in groups { print("\(g.id): \(try describeFields(g))") }
    }
}

/// `--groups a,b` (`""` for none) as the list the API takes.
func commaList(_ text: String) -> [String] {
    text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

// MARK: - keyway users

struct UsersCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users", abstract: "The directory's users (members): list, show, create, update, delete.",
        subcommands: [List.self, Show.self, Create.self, Update.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every user, with groups, fobs and whether a PIN is set.")
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            try output.show(users: try await api.call("GET /v1/users") { try await $0.listUsers() })
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One user.")
        @Argument(help: "User id, e.g. u-ada.") var id: String
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let user = try await api.call("GET /v1/users/\(percentPath(id))") { try await $0.getUser(path: .init(id: id)) }
            try output.show(user, id: id)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a user. Give fobs here or with `keyway tags set`; a PIN only with `keyway pins set` (never on a command line).")
        @Argument(help: "User id, e.g. u-kim.") var id: String
        @Option(help: "Display name (default the id).") var name: String?
        @Option(name: .customLong("group"), help: "Access group id (repeatable).") var groups: [String] = []
        @Option(name: .customLong("tag"), help: "Fob UID in hex, e.g. 04:A2:3B:1C (repeatable, at most 4).") var tags: [String] = []
        @Option(help: "Fobs and PIN work from this RFC 3339 time.") var validFrom: String?
        @Option(help: "… until this RFC 3339 time (exclusive).") var validUntil: String?
        @Flag(help: "SALTO KS offline access: the user's fobs still open a lock that cannot reach an online IQ (a PIN has it anyway).")
        var offlineAccess = false
        @Flag(help: "Blocked: refused at every lock with every credential, from each lock's next sync.") var blocked = false
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func validate() throws {
            if let validFrom { _ = try parseISO8601(validFrom, option: "--valid-from") }
            if let validUntil { _ = try parseISO8601(validUntil, option: "--valid-until") }
        }

        func run() async throws {
            let api = try serverOptions.connect()
            let request = Components.Schemas.UserRequest(id: id, name: name, groups: groups.isEmpty ? nil : groups,
                                                         tags: tags.isEmpty ? nil : tags, validFrom: validFrom, validUntil: validUntil,
                                                         offlineAccess: offlineAccess, blocked: blocked)
            let user = try await api.call("POST /v1/users") { try await $0.createUser(body: .json(request)) }
            try output.show(user, id: id)
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a user: the options given replace what the user has.")
        @Argument(help: "User id.") var id: String
        @Option(help: "Display name.") var name: String?
        @Option(help: "All the user's access groups, comma-separated (\"\" for none).") var groups: String?
        @Option(help: "Fobs and PIN work from this RFC 3339 time.") var validFrom: String?
        @Option(help: "… until this RFC 3339 time (exclusive).") var validUntil: String?
        @Option(help: "true or false: SALTO KS offline access for the user's fobs.") var offlineAccess: Bool?
        @Option(help: "true or false: blocked at every lock.") var blocked: Bool?
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func validate() throws {
            guard name != nil || groups != nil || validFrom != nil || validUntil != nil || offlineAccess != nil || blocked != nil else {
                throw ValidationError("give at least one of --name, --groups, --valid-from, --valid-until, --offline-access, --blocked")
            }
            if let validFrom { _ = try parseISO8601(validFrom, option: "--valid-from") }
            if let validUntil { _ = try parseISO8601(validUntil, option: "--valid-until") }
        }

        func run() async throws {
            let api = try serverOptions.connect()
            let request = Components.Schemas.UserUpdate(name: name, groups: groups.map(commaList), validFrom: validFrom, validUntil: validUntil,
                                                        offlineAccess: offlineAccess, blocked: blocked)
            let user = try await api.call("PUT /v1/users/\(percentPath(id))") { try await $0.updateUser(path: .init(id: id), body: .json(request)) }
            try output.show(user, id: id)
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a user (their fobs and PIN stop at each lock's next sync).")
        @Argument(help: "User id.") var id: String
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let change = try await api.call("DELETE /v1/users/\(percentPath(id))") { try await $0.deleteUser(path: .init(id: id)) }
            try output.show(change, id: id)
        }
    }
}

// MARK: - keyway groups

struct GroupsCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "groups", abstract: "The directory's access groups: list, show, create, update.",
        subcommands: [List.self, Show.self, Create.self, Update.self, Members.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every access group: locks, weekly schedule, office-mode right.")
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            try output.show(groups: try await api.call("GET /v1/groups") { try await $0.listGroups() })
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One access group.")
        @Argument(help: "Group id, e.g. members.") var id: String
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let group = try await api.call("GET /v1/groups/\(percentPath(id))") { try await $0.getGroup(path: .init(id: id)) }
            try output.show(group, id: id)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an access group.")
        @Argument(help: "Group id, e.g. day-pass.") var id: String
        @Option(help: "Display name (default the id).") var name: String?
        @Option(name: .customLong("lock"), help: "Lock id (repeatable; none for every lock of the site).") var locks: [String] = []
        @Option(name: .customLong("schedule"), help: "Weekly window such as \"mon-fri 09:00-18:00\" (repeatable; none for 24/7).")
        var schedule: [String] = []
        @Flag(help: "Members may toggle office mode on the group's locks.") var officeMode = false
        @Flag(help: "Members still open the group's locks during a lockdown (security staff, first responders).") var lockdownOverride = false
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let request = Components.Schemas.GroupRequest(id: id, name: name, locks: locks.isEmpty ? nil : locks,
                                                          schedule: schedule.isEmpty ? nil : schedule, officeMode: officeMode,
                                                          lockdownOverride: lockdownOverride)
            let group = try await api.call("POST /v1/groups") { try await $0.createGroup(body: .json(request)) }
            try output.show(group, id: id)
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change an access group: the options given replace what it has.")
        @Argument(help: "Group id.") var id: String
        @Option(help: "Display name.") var name: String?
        @Option(name: .customLong("lock"), help: "Lock id (repeatable): all the group's locks.") var locks: [String] = []
        @Option(name: .customLong("schedule"), help: "Weekly window (repeatable): all the group's windows.") var schedule: [String] = []
        @Option(help: "true or false: members may toggle office mode.") var officeMode: Bool?
        @Option(help: "true or false: members still open the group's locks during a lockdown.") var lockdownOverride: Bool?
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func validate() throws {
            guard name != nil || !locks.isEmpty || !schedule.isEmpty || officeMode != nil || lockdownOverride != nil else {
                throw ValidationError("give at least one of --name, --lock, --schedule, --office-mode, --lockdown-override")
            }
        }

        func run() async throws {
            let api = try serverOptions.connect()
            let request = Components.Schemas.GroupUpdate(name: name, locks: locks.isEmpty ? nil : locks,
                                                         schedule: schedule.isEmpty ? nil : schedule, officeMode: officeMode,
                                                         lockdownOverride: lockdownOverride)
            let group = try await api.call("PUT /v1/groups/\(percentPath(id))") { try await $0.updateGroup(path: .init(id: id), body: .json(request)) }
            try output.show(group, id: id)
        }
    }
}

// MARK: - keyway groups members (bookings)

extension GroupsCLI {
    struct Members: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A group's time-limited memberships (bookings): list, add, show, remove.",
            subcommands: [List.self, Add.self, Show.self, Remove.self])

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "The group's memberships, in the order they were made.")
            @Argument(help: "Group id.") var group: String
            @OptionGroup var output: DirectoryOutput
            @OptionGroup var serverOptions: ServerOptions

            func run() async throws {
                let api = try serverOptions.connect()
                let all = try await api.call("GET /v1/groups/\(percentPath(group))/members") { try await $0.listMemberships(path: .init(id: group)) }
                if output.json { try printJSON(all); return }
                for m in all { print("\(m.id): \(try describeFields(m))") }
            }
        }

        struct Add: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Book a user into the group from --from to --until, with grace before and after (every fob and PIN of the user).")
            @Argument(help: "Group id, e.g. room-dolores-bookers.") var group: String
            @Argument(help: "User id.") var user: String
            @Option(help: "Booking start, RFC 3339.") var from: String
            @Option(help: "Booking end, RFC 3339 (after --from).") var until: String
            @Option(help: "Grace in seconds on both sides (Kisi and Proximity: 900, Spacebring: 1800).") var grace: Int?
            @Option(help: "Grace before the start, seconds (default --grace, else 0).") var graceBefore: Int?
            @Option(help: "Grace after the end, seconds (default --grace, else 0).") var graceAfter: Int?
            @OptionGroup var output: DirectoryOutput
            @OptionGroup var serverOptions: ServerOptions

            func validate() throws {
                _ = try parseISO8601(from, option: "--from")
                _ = try parseISO8601(until, option: "--until")
                for (name, value) in [("--grace", grace), ("--grace-before", graceBefore), ("--grace-after", graceAfter)] {
                    if let value, !(0...86_400).contains(value) { throw ValidationError("\(name): 0 to 86400 seconds") }
                }
            }

            func run() async throws {
                let api = try serverOptions.connect()
                let request = Components.Schemas.MembershipRequest(user: user, notBefore: from, notAfter: until,
                                                                   graceBeforeS: graceBefore ?? grace, graceAfterS: graceAfter ?? grace)
                let m = try await api.call("POST /v1/groups/\(percentPath(group))/members") {
                    try await $0.createMembership(path: .init(id: group), body: .json(request))
                }
                try output.show(m, id: m.id)
            }
        }

        struct Show: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "One membership.")
            @Argument(help: "Group id.") var group: String
            @Argument(help: "Membership id (from `add` or `list`).") var membership: String
            @OptionGroup var output: DirectoryOutput
            @OptionGroup var serverOptions: ServerOptions

            func run() async throws {
                let api = try serverOptions.connect()
                let m = try await api.call("GET /v1/groups/\(percentPath(group))/members/\(percentPath(membership))") {
                    try await $0.getMembership(path: .init(id: group, membership: membership))
                }
                try output.show(m, id: membership)
            }
        }

        struct Remove: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Cancel a membership: locks refuse it from their IQ's next sync, and not before.")
            @Argument(help: "Group id.") var group: String
            @Argument(help: "Membership id.") var membership: String
            @OptionGroup var output: DirectoryOutput
            @OptionGroup var serverOptions: ServerOptions

            func run() async throws {
                let api = try serverOptions.connect()
                let change = try await api.call("DELETE /v1/groups/\(percentPath(group))/members/\(percentPath(membership))") {
                    try await $0.deleteMembership(path: .init(id: group, membership: membership))
                }
                try output.show(change, id: membership)
            }
        }
    }
}

extension Operations.ActivateIQ.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Iq> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .forbidden(let f): switch f.body { case .json(let e): .failed(status: 403, e) }
        case .notFound(let e): .failed(e)
        case .conflict(let c): switch c.body { case .json(let e): .failed(status: 409, e) }
        case .contentTooLarge(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.DeactivateIQ.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Iq> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .forbidden(let f): switch f.body { case .json(let e): .failed(status: 403, e) }
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.ListMemberships.Output: APIOutput {
    var outcome: APIOutcome<[Components.Schemas.Membership]> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.CreateMembership.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Membership> {
        switch self {
        case .created(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.GetMembership.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Membership> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.DeleteMembership.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.DirectoryChange> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

// MARK: - keyway tags

struct TagsCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tags", abstract: "A user's fobs: set them all, or take them all away.", subcommands: [SetCommand.self, Clear.self])

    struct SetCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set", abstract: "Replace a user's fobs (at most 4; a UID belongs to one user of the site).")
        @Argument(help: "User id.") var user: String
        @Argument(help: "Fob UIDs in hex, e.g. 04:A2:3B:1C:5D:80.") var uids: [String]
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func validate() throws {
            guard !uids.isEmpty else { throw ValidationError("give at least one UID (`keyway tags clear USER` takes them all away)") }
        }

        func run() async throws {
            let answer = try await TagsCLI.put(user, uids, serverOptions)
            try output.show(answer, id: user)
        }
    }

    struct Clear: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take all of a user's fobs away.")
        @Argument(help: "User id.") var user: String
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            try output.show(try await TagsCLI.put(user, [], serverOptions), id: user)
        }
    }

    static func put(_ user: String, _ uids: [String], _ server: ServerOptions) async throws -> Components.Schemas.User {
        let api = try server.connect()
        return try await api.call("PUT /v1/users/\(percentPath(user))/tags") {
            try await $0.setUserTags(path: .init(id: user), body: .json(.init(tags: uids)))
        }
    }
}

// MARK: - keyway pins

struct PinsCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pins", abstract: "A user's keypad PIN: set it (read from stdin, never echoed) or clear it.",
        subcommands: [SetCommand.self, Clear.self])

    struct SetCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Set a user's PIN (4–8 digits, unique in the site). The PIN is read from standard input — typed "
                + "without echo on a terminal, or piped (`printf 2580 | keyway pins set u-kim`) — so it never sits in "
                + "the shell's history or the process list; nothing prints it.")
        @Argument(help: "User id.") var user: String
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let pin = try readSecret(prompt: "PIN: ", command: "keyway pins set", what: "PIN")
            guard (4...8).contains(pin.count), pin.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw UserFacingError("keyway pins set: the PIN must be 4 to 8 digits")
            }
            let api = try serverOptions.connect()
            let answer = try await api.call("PUT /v1/users/\(percentPath(user))/pin") {
                try await $0.setUserPIN(path: .init(id: user), body: .json(.init(pin: pin)))
            }
            try output.show(answer, id: user)
        }
    }

    struct Clear: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a user's PIN away.")
        @Argument(help: "User id.") var user: String
        @OptionGroup var output: DirectoryOutput
        @OptionGroup var serverOptions: ServerOptions

        func run() async throws {
            let api = try serverOptions.connect()
            let answer = try await api.call("DELETE /v1/users/\(percentPath(user))/pin") { try await $0.clearUserPIN(path: .init(id: user)) }
            try output.show(answer, id: user)
        }
    }

}

/// A secret (a keypad PIN, an IQ's activation PIN) as the first line of standard input, without its line
/// end: never an option, so it stays out of shell history and the process list. On a terminal the prompt
/// goes to stderr and echo is off while it is typed (restored even if reading fails).
func readSecret(prompt: String, command: String, what: String) throws -> String {
    let terminal = isatty(STDIN_FILENO) == 1
    var saved = termios()
    if terminal {
        writeStderrNoNewline(prompt)
        if tcgetattr(STDIN_FILENO, &saved) == 0 {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
        }
    }
    defer {
        if terminal {
            _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
            writeStderr("")
        }
    }
    guard let line = readLine(strippingNewline: true) else {
        throw UserFacingError("\(command): no \(what) on standard input")
    }
    return line.trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
}

func writeStderrNoNewline(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

// MARK: - The operations' outcomes (APIClient.swift)

extension Operations.ListUsers.Output: APIOutput {
    var outcome: APIOutcome<[Components.Schemas.User]> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.GetUser.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.User> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.CreateUser.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.User> {
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

extension Operations.UpdateUser.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.User> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.DeleteUser.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.DirectoryChange> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.SetUserTags.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.User> {
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

extension Operations.SetUserPIN.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.User> {
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

extension Operations.ClearUserPIN.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.User> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.ListGroups.Output: APIOutput {
    var outcome: APIOutcome<[Components.Schemas.Group]> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.GetGroup.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Group> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.CreateGroup.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Group> {
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

extension Operations.UpdateGroup.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Group> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}
