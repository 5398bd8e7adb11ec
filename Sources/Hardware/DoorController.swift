import Foundation
import MobileKey

/// A door alarm raised by a controller (Matter Door Lock alarm codes: ForcedUser/DoorForcedOpen,
/// DoorAjar).
public enum DoorAlarm: String, Sendable, Hashable, Codable {
    /// Opened while the relay held it and nobody was granted or pressed the exit button.
    case forcedOpen = "forced_open"
    /// Opened legitimately but left open past the held-open limit.
    case heldOpen = "held_open"
}

public struct DoorControllerStatus: Sendable, Hashable, Codable {
    public let id: String
    public let name: String
    public let lockID: String
    public let relay: RelayKind
    public let powered: Bool
    /// The relay coil is energised.
    public let relayEnergised: Bool
    /// The door can be pushed open without force.
    public let doorFree: Bool
    /// From the door-position switch; nil without one.
    public let doorOpen: Bool?
    public let alarm: DoorAlarm?
    public let heldOpenLimit: UInt32
    public let doorPositionSwitch: Bool
    public let requestToExit: Bool
    public let lastSequence: UInt64
    public let trailCount: Int
}

/// A door controller: drives an electric strike or a mag lock for the lock (reader) it serves, reads
/// the door-position switch and the request-to-exit button, and raises forced-open and held-open alarms.
///
/// The relay follows physics, not wishes (`RelayKind`): a fail-secure strike energises to unlock and stays
/// locked without power; a fail-safe strike and a mag lock energise to lock and release on power loss.
/// The reader of the door is the `Lock` it drives: decisions are the lock's; the controller records door
/// events (opened, closed, forced, held, power) in its own trail.
public actor DoorController {
    public nonisolated let id: String
    public nonisolated let lockID: String
    public nonisolated let relay: RelayKind
    /// The lock whose decisions this controller carries out.
    public nonisolated let lock: Lock

    private let config: DoorControllerConfig
    private let link: DoorLink
    private let clock: any KeywayClock
    private var audit: AuditWriter
    private var alarm: DoorAlarm?
    private var heldTimer: ClockTimer?
    private var heldGeneration: UInt64 = 0

    init(config: DoorControllerConfig, lock: Lock, link: DoorLink, clock: any KeywayClock, sink: AuditSink?,
         trailCapacity: Int = LockConfig.defaultTrailCapacity) {
        id = config.id
        lockID = config.lockID
        relay = config.relay
        self.config = config
        self.lock = lock
        self.link = link
        self.clock = clock
        audit = AuditWriter(deviceKind: .doorController, deviceID: config.id, capacity: trailCapacity, sink: sink)
    }

    public var status: DoorControllerStatus {
        let s = link.snapshot
        return DoorControllerStatus(id: id, name: config.name, lockID: lockID, relay: relay, powered: s.powered,
                                    relayEnergised: s.energised, doorFree: s.free,
                                    doorOpen: config.doorPositionSwitch ? s.doorOpen : nil, alarm: alarm,
                                    heldOpenLimit: config.heldOpenLimit, doorPositionSwitch: config.doorPositionSwitch,
                                    requestToExit: config.requestToExit, lastSequence: audit.nextSequence - 1,
                                    trailCount: audit.trail.count)
    }

    public var currentAlarm: DoorAlarm? { alarm }

    /// What a snapshot keeps of a controller: mains power, the door-position switch and a raised alarm.
    public struct State: Codable, Sendable, Equatable {
        public var powered: Bool
        public var doorOpen: Bool
        public var alarm: DoorAlarm?

        public init(powered: Bool, doorOpen: Bool, alarm: DoorAlarm?) {
            self.powered = powered
            self.doorOpen = doorOpen
            self.alarm = alarm
        }
    }

    public func exportState() -> State {
        let s = link.snapshot
        return State(powered: s.powered, doorOpen: s.doorOpen, alarm: alarm)
    }

    /// Puts a saved state back, recording nothing: a snapshot restore is not an event at the door. Call
    /// it before the lock's `resume()`, which drives the relay and finds the state it saved. A door
    /// standing open without an alarm has its held-open limit counted again from now.
    public func importState(_ state: State) {
        link.setPowered(state.powered)
        link.setDoorOpen(state.doorOpen)
        alarm = state.alarm
        cancelHeldTimer()
        if state.powered, state.doorOpen, state.alarm == nil { armHeldTimer() }
    }

    /// Records not yet collected, oldest first (not removed).
    public func trail(limit: Int = .max) -> [AuditRecord] { audit.trail.peek(limit: limit) }

    /// Drains the controller's trail (controllers are wired to the network; the Emulator collects them).
    public func collectTrail(limit: Int = .max) -> [AuditRecord] {
        audit.drain(limit: limit, at: clock.now())
    }

    private func write(_ kind: AuditKind, _ fill: (inout AuditRecord) -> Void = { _ in }) {
        let lockID = self.lockID
        audit.write(kind, at: clock.now()) {
            $0.lockID = lockID
            fill(&$0)
        }
    }

    // MARK: - Door-position switch

    /// The door-position switch reports the door opened (`true`) or closed (`false`).
    ///
    /// Opening a door the relay holds, with no grant and no exit request in force, is a forced opening.
    /// A legitimate opening arms the held-open timer; closing clears any alarm.
    public func setDoor(open: Bool) async throws {
        guard config.doorPositionSwitch else { throw HardwareError.noDoorPositionSwitch(controllerID: id) }
        let before = link.snapshot
        guard before.doorOpen != open else { return }
        link.setDoorOpen(open)
        guard before.powered else {
            // A controller without power sees nothing and records nothing; the switch is read again
            // when power returns.
            return
        }
        if open {
            if before.free {
                write(.doorOpened) { $0.detail = before.passage ? "opened in office mode" : "opened while released" }
                armHeldTimer()
            } else {
                alarm = .forcedOpen
                write(.doorForcedOpen) {
                    $0.reason = "door_forced_open"
                    $0.detail = "opened while the \(self.relay.rawValue) held the door, without a grant or exit request"
                }
            }
            await lock.doorChanged("door_opened")
        } else {
            cancelHeldTimer()
            let cleared = alarm
            alarm = nil
            write(.doorClosed) {
                $0.reason = .doorClosed
                if let cleared { $0.detail = "\(cleared.rawValue) alarm cleared" }
            }
            await lock.doorChanged(.doorClosed)
        }
    }

    private func armHeldTimer() {
        cancelHeldTimer()
        heldGeneration &+= 1
        let generation = heldGeneration
        heldTimer = clock.schedule(after: TimeInterval(config.heldOpenLimit)) { [weak self] in
            await self?.heldOpenDue(generation)
        }
    }

    private func cancelHeldTimer() {
        heldTimer?.cancel()
        heldTimer = nil
        heldGeneration &+= 1
    }

    private func heldOpenDue(_ generation: UInt64) {
        guard generation == heldGeneration else { return }
        heldTimer = nil
        let s = link.snapshot
        guard s.doorOpen, s.powered else { return }
        if s.passage {
            // Office mode: a propped door is the point. Look again after another limit.
            armHeldTimer()
            return
        }
        alarm = .heldOpen
        write(.doorHeldOpen) {
            $0.reason = .heldOpenLimit
            $0.detail = "open longer than \(self.config.heldOpenLimit) s"
        }
    }

    // MARK: - Request to exit

    /// Someone inside pressed the exit button: the lock grants an exit (recorded by the lock with method
    /// `exit_button`) and releases the door for its open time, so the opening that follows is not forced.
    @discardableResult
    public func pressRequestToExit() async throws -> Decision {
        guard config.requestToExit else { throw HardwareError.noRequestToExit(controllerID: id) }
        guard link.snapshot.powered else { throw HardwareError.unpowered(deviceID: id, reason: .noPower) }
        return try await lock.exitRequested()
    }

    // MARK: - Power

    /// Mains power lost (`false`) or restored (`true`). The relay drops out; what that does to the door
    /// depends on the relay kind. The lock re-reads the physical state and records the change.
    public func setPower(_ on: Bool) async {
        let before = link.snapshot
        guard before.powered != on else { return }
        link.setPowered(on)
        let after = link.snapshot
        if on {
            write(.powerRestored) {
                $0.reason = .powerRestored
                $0.detail = after.free ? "door released (\(self.relay.rawValue))" : "door secured (\(self.relay.rawValue))"
            }
            if after.doorOpen && !after.passage && after.free { armHeldTimer() }
            await lock.doorChanged(.powerRestored)
        } else {
            cancelHeldTimer()
            write(.powerLost) {
                $0.reason = .powerLost
                $0.detail = after.free ? "\(self.relay.rawValue) released the door (fail-safe)" : "\(self.relay.rawValue) keeps the door locked (fail-secure)"
            }
            await lock.doorChanged(.powerLost)
        }
    }
}
