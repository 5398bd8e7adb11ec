import Foundation

/// What the reader shows and sounds after a presentation: observable state for the live view and tests.
public struct ReaderFeedback: Sendable, Hashable, Codable {
    public enum LED: String, Sendable, Hashable, Codable { case off, green, red }
    public enum Beep: String, Sendable, Hashable, Codable {
        case none
        /// One short beep.
        case accepted
        /// The error sound: three short low beeps.
        case rejected
        /// Two rising beeps: passage started.
        case officeModeOn = "office_mode_on"
        /// Two falling beeps: passage ended.
        case officeModeOff = "office_mode_off"
    }

    public var led: LED
    public var beep: Beep
    /// Lock time at which it started; nil if the reader never signalled.
    public var since: Date?
    /// Increments with every signal, so two identical signals in a row are distinguishable.
    public var serial: UInt64

    /// How long the LED stays lit after a signal.
    public static let displayDuration: TimeInterval = 2
    public static let idle = ReaderFeedback(led: .off, beep: .none, since: nil, serial: 0)

    /// What the reader shows at `time`: the last signal while it is displayed, then dark.
    public func showing(at time: Date) -> ReaderFeedback {
        guard let since, time.timeIntervalSince(since) < ReaderFeedback.displayDuration, time >= since else {
            return ReaderFeedback(led: .off, beep: .none, since: since, serial: serial)
        }
        return self
    }
}
