import Foundation

/// A property a fuzz target checks on every input, broken. libFuzzer turns it into a crash report
/// (with the input saved); the corpus-replay tests turn it into a test failure.
public struct FuzzInvariantViolation: Error, CustomStringConvertible {
    public let target: String
    public let message: String
    public var description: String { "\(target): invariant broken: \(message)" }
}

/// One parser that takes outside bytes, with the properties every input must keep.
///
/// A target never traps on bad input (that is what the sanitizers and libFuzzer watch for) and
/// throws `FuzzInvariantViolation` when the parser accepts something it must not, or answers in a
/// way the protocol forbids. Targets are deterministic given their fixture, except for the fresh
/// randomness the protocol itself requires (nonces, ephemeral keys, ECDSA).
public struct FuzzTarget: Sendable {
    public let name: String
    /// What the target feeds and what it checks, for `keyway-fuzz list` and `make fuzz`.
    public let summary: String
    /// libFuzzer `-max_len` for this target (bounded inputs mutate faster).
    public let maxLength: Int
    let body: @Sendable ([UInt8], FuzzCheck) throws -> Void

    init(_ name: String, maxLength: Int, _ summary: String, _ body: @escaping @Sendable ([UInt8], FuzzCheck) throws -> Void) {
        self.name = name; self.summary = summary; self.maxLength = maxLength; self.body = body
    }

    /// Runs one input.
    /// - Throws: `FuzzInvariantViolation` (anything else a target throws is wrapped into one: targets
    ///   handle the parser's own typed errors themselves).
    public func run(_ input: [UInt8]) throws(FuzzInvariantViolation) {
        do { try body(input, FuzzCheck(target: name)) } catch let v as FuzzInvariantViolation { throw v } catch {
            throw FuzzInvariantViolation(target: name, message: "unexpected error escaped the target: \(error)")
        }
    }

}

/// Handed to a target's body to name its broken invariants.
struct FuzzCheck {
    let target: String
    func fail(_ message: String) -> FuzzInvariantViolation { FuzzInvariantViolation(target: target, message: message) }
}

/// Every fuzz target, one per parser of outside bytes (issue 8; docs/SECURITY.md "Fuzzing").
public enum FuzzTargets {
    public static let all: [FuzzTarget] = [
        MobileKeyFuzz.cbor, MobileKeyFuzz.coseSign1, MobileKeyFuzz.credential, MobileKeyFuzz.revocationList,
        MobileKeyFuzz.lockCertificate,
        TapFuzz.hello, TapFuzz.phoneHello, TapFuzz.presentation, TapFuzz.payload, TapFuzz.result, TapFuzz.fragments, TapFuzz.fast,
        RadioFuzz.attServer, RadioFuzz.l2capStream, RadioFuzz.btsnoop,
        SiteFileFuzz.siteFile,
        ControlAPIFuzz.jsonBodies,
    ]

    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}

/// The repository root, found from this file's path at build time (the fuzz fixtures and the
/// corpus live in the checkout the binary was built from).
public enum FuzzPaths {
    public static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    public static var corpusRoot: URL { repositoryRoot.appendingPathComponent("Fixtures/fuzz") }
    public static var vectors: URL { repositoryRoot.appendingPathComponent("Fixtures/vectors") }
}
