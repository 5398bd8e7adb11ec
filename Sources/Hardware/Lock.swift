import Foundation
import MobileKey

/// A BLE lock (escutcheon, cylinder, wall reader, locker), or the reader of a door driven by a door
/// controller. Every decision is made here, offline, from what the lock holds: its clock, the access
/// list and the revocation list last pushed by an IQ, and the site keys it was provisioned with.
public actor Lock {
    /// Holding a credential on the reader this long toggles office mode (for holders of the right).
    public static let officeModeHoldDuration: TimeInterval = 5
    /// Longest PIN the keypad takes; longer input is refused without a lookup.
    public static let maximumPINLength = 16

    public nonisolated let id: String
    public nonisolated let kind: LockKind
    /// How far from the reader a presentation is still read (the site file's `reach_m`, else the kind's).
    public nonisolated let readerReach: Double
    public nonisolated let siteID: String
    public nonisolated let hasDoorController: Bool

    private var config: LockConfig
    private let zone: SiteTimeZone
    private let clock: any KeywayClock
    private var audit: AuditWriter
    private let door: DoorLink?
    private var tapIdentity: TapLockIdentity?
    private var revocations: RevocationList
    private var accessList: AccessList
    /// Which locks reach an online IQ now (nil: a lock built alone, with no IQ model; it judges by its full list).
    private let uplinks: SiteUplinks?
    /// The platform's lockdown, as last delivered by an IQ: everyone is refused but lockdown-override users.
    private var lockedDown = false

    private enum Command: Equatable {
        case locked
        /// Until a clock instant (timers run on the clock, not on the lock's drifting time).
        case unlocked(until: Date)
        /// `easyUntil`: the clock instant at which an easy-office-mode passage ends.
        case officeMode(easyUntil: Date?)

        var releases: Bool { self != .locked }
        var isOffice: Bool { if case .officeMode = self { return true } else { return false } }
    }

    private var command: Command = .locked
    private var reportedState: LockState = .locked
    private var relockTimer: ClockTimer?
    private var scheduleTimer: ClockTimer?
    private var easyTimer: ClockTimer?
    private var holdTimer: ClockTimer?
    private var heldToken: UInt64 = 0
    private var batteryLevel: UInt8?
    private var batteryLowReported = false
    private var clockOffset: TimeInterval = 0
    private var wrongPINs: UInt8 = 0
    /// The latest lock time at which this lock made a decision (or an IQ set its clock). A clock set
    /// back must not bring an expired key, fob or PIN back to life: validity and schedules are judged
    /// at no earlier time than this (records still carry the lock's own time). Only an IQ time sync,
    /// which is trusted, moves it back.
    private var decisionFloor: Date?
    private var keypadLockedUntil: Date?
    private var feedback = ReaderFeedback.idle
    private var position: Position

    init(config: LockConfig, siteID: String, zone: SiteTimeZone, clock: any KeywayClock, sink: AuditSink?,
         door: DoorLink?, accessList: AccessList, revocations: RevocationList, tapIdentity: TapLockIdentity?,
         uplinks: SiteUplinks? = nil) {
        id = config.id
        kind = config.kind
        readerReach = config.readerReach
        self.siteID = siteID
        hasDoorController = door != nil
        self.config = config
        self.zone = zone
        self.clock = clock
        audit = AuditWriter(deviceKind: .lock, deviceID: config.id, capacity: Int(config.trailCapacity), sink: sink)
        self.door = door
        self.accessList = accessList
        self.uplinks = uplinks
        self.revocations = revocations
        self.tapIdentity = tapIdentity
        position = config.position
        batteryLevel = door == nil ? (config.battery?.level ?? 100) : nil
        batteryLowReported = false
        if let level = batteryLevel, level == 0 { reportedState = .uncertain }
        // Back as the flash left it: state, lists and clock of the last durable write (timers are
        // armed by `resume()`, once the site is wired).
        if let m = LockMemory.decode(audit.savedMemory[LockMemory.statePart]) {
            switch m.command {
            case .unlocked: command = .unlocked(until: m.until ?? clock.now())
            case .officeMode: command = .officeMode(easyUntil: m.until)
            default: command = .locked
            }
            reportedState = m.reportedState
            if door == nil { batteryLevel = m.batteryLevel }
            batteryLowReported = m.batteryLowReported
            clockOffset = m.clockOffset
            decisionFloor = m.decisionFloor
            wrongPINs = m.wrongPINs
            keypadLockedUntil = m.keypadLockedUntil
            lockedDown = m.lockedDown ?? false
            if LockConfig.openTimeRange.contains(Int(m.openTime)) { self.config.openTime = m.openTime }
            if let t = m.accessType { self.config.accessType = t }
            if let e = m.easyOfficeMode { self.config.easyOfficeMode = e }
        }
        // A list is taken only with the state that names its version: a reset or a snapshot restore
        // rewrites the state part, and a list part it left behind is not the list this lock holds.
        let held = LockMemory.decode(audit.savedMemory[LockMemory.statePart])
        if let bytes = audit.savedMemory[LockMemory.accessListPart],
           let list = try? JSONDecoder().decode(AccessList.self, from: Data(bytes)), list.version == held?.accessListVersion {
            self.accessList = list
        }
        if let bytes = audit.savedMemory[LockMemory.revocationListPart], let issuers = tapIdentity?.verifier.issuers,
           let list = try? RevocationList.empty(siteID: siteID).accepting(bytes, issuers: issuers),
           list.version == held?.revocationListVersion {
            self.revocations = list
        }
    }

    /// A stand-alone lock (tests, tools). `Site` builds the locks of a site file.
    public init(config: LockConfig, siteID: String, timeZone: SiteTimeZone, clock: any KeywayClock,
                sink: AuditSink? = nil, accessList: AccessList = .empty, revocations: RevocationList? = nil,
                tapIdentity: TapLockIdentity? = nil) {
        self.init(config: config, siteID: siteID, zone: timeZone, clock: clock, sink: sink, door: nil,
                  accessList: accessList, revocations: revocations ?? .empty(siteID: siteID), tapIdentity: tapIdentity)
    }

    // MARK: - Observing

    /// The lock's own clock: the site clock plus whatever drift it has (until an IQ syncs it).
    public func lockTime() -> Date { clock.now().addingTimeInterval(clockOffset) }

    public var state: LockState { currentState() }
    public var currentFeedback: ReaderFeedback { feedback.showing(at: lockTime()) }
    /// The last signal, even if no longer displayed.
    public var lastFeedback: ReaderFeedback { feedback }
    public var revocationListVersion: UInt64 { revocations.version }
    public var accessListVersion: UInt64 { accessList.version }
    public var currentPosition: Position { position }
    public var configuration: LockConfig { config }
    /// Records no IQ has collected yet, oldest first (not removed).
    public func trail(limit: Int = .max) -> [AuditRecord] { audit.trail.peek(limit: limit) }
    public var isPowered: Bool { powerProblem() == nil }
    public var mobileKeysProvisioned: Bool { tapIdentity != nil }

    public var status: LockStatus {
        let now = lockTime()
        var unlockedUntil: Date?, officeEnds: Date?
        switch command {
        case .unlocked(let until): unlockedUntil = until.addingTimeInterval(clockOffset)
        case .officeMode(let easy): officeEnds = easy?.addingTimeInterval(clockOffset)
        case .locked: break
        }
        return LockStatus(
            id: id, name: config.name, kind: kind, position: position, state: currentState(),
            unlockedUntil: unlockedUntil, officeModeEndsAt: officeEnds, feedback: feedback.showing(at: now),
            batteryLevel: batteryLevel, batteryLow: batteryLevel.map { $0 < (config.battery?.lowThreshold ?? 20) } ?? false,
            powered: powerProblem() == nil, openTime: config.openTime, revocationListVersion: revocations.version,
            accessListVersion: accessList.version, trailCount: audit.trail.count, trailCapacity: audit.trail.capacity,
            trailPendingLoss: audit.trail.lost, lastSequence: audit.nextSequence - 1,
            keypadLockedUntil: keypadLockedUntil.flatMap { $0 > now ? $0 : nil }, lockTime: now,
            clockOffset: clockOffset, doorController: door != nil, mobileKeysProvisioned: tapIdentity != nil)
    }

    // MARK: - Tags

    /// A fob or card tapped on the reader (placed and lifted). `action` other than `.open` models a
    /// presentation held longer than `officeModeHoldDuration` asking for that office-mode change.
    @discardableResult
    public func presentTag(_ uid: TagUID, action: TapAction = .open, distance: Double = 0) throws -> Decision {
        try checkReach(distance)
        try checkPowered()
        cancelHold()
        return decideTag(uid, action: action)
    }

    /// A fob placed on the reader and left there: decided at once as a tap; if it is still there after
    /// `officeModeHoldDuration` seconds and its holder has the office-mode right, office mode toggles.
    @discardableResult
    public func placeTag(_ uid: TagUID, distance: Double = 0) throws -> Decision {
        try checkReach(distance)
        try checkPowered()
        cancelHold()
        let decision = decideTag(uid, action: .open)
        // Only a plain opening continues into a hold: in an easy-office-mode window the tap itself
        // already toggled passage, and holding on must not toggle it back.
        if decision.granted, decision.outcome == .unlocked, config.accessType == .grantOfficeMode,
           let entry = accessList.entry(forTag: uid), entry.officeMode {
            heldToken &+= 1
            let token = heldToken
            holdTimer = clock.schedule(after: Lock.officeModeHoldDuration) { [weak self] in
                await self?.holdElapsed(uid, token: token)
            }
        }
        return decision
    }

    /// The fob is taken away from the reader.
    public func liftTag() {
        cancelHold()
    }

    private func cancelHold() {
        holdTimer?.cancel()
        holdTimer = nil
        heldToken &+= 1
    }

    private func holdElapsed(_ uid: TagUID, token: UInt64) {
        guard token == heldToken, powerProblem() == nil else { return }
        holdTimer = nil
        _ = decideTag(uid, action: command.isOffice ? .officeModeOff : .officeModeOn)
    }

    private func decideTag(_ uid: TagUID, action: TapAction) -> Decision {
        let now = lockTime()
        let key = uid.description
        guard let entry = accessList.entry(forTag: uid) else {
            return deny(.unknownTag, method: .tag, action: action, userID: nil, keyID: key)
        }
        switch judge(entry, method: .tag, at: validityTime(now)) {
        case .denied(let reason): return deny(reason, method: .tag, action: action, userID: entry.userID, keyID: key)
        case .allowed(let officeRight): return perform(action, officeRight: officeRight, method: .tag, userID: entry.userID, keyID: key)
        }
    }

    // MARK: - PINs

    /// A PIN typed on the keypad. Wrong PINs count towards the brute-force lockout; during a lockout
    /// every PIN is refused, even a right one.
    @discardableResult
    public func enterPIN(_ pin: String, action: TapAction = .open) throws -> Decision {
        guard config.keypad else { throw HardwareError.noKeypad(lockID: id) }
        try checkPowered()
        let now = lockTime()
        if let until = keypadLockedUntil {
            if now < until {
                return deny(.keypadLockedOut, method: .pin, action: action, userID: nil, keyID: nil)
            }
            keypadLockedUntil = nil
            wrongPINs = 0
        }
        let valid = pin.utf8.count <= Lock.maximumPINLength && pin.utf8.allSatisfy { $0 >= 48 && $0 <= 57 }
        let entry = valid ? accessList.entry(forPIN: pin) : nil
        guard let entry else {
            wrongPINs &+= 1
            let decision = deny(.wrongPIN, method: .pin, action: action, userID: nil, keyID: nil)
            if wrongPINs >= config.pinLockout.attempts {
                let until = now.addingTimeInterval(TimeInterval(config.pinLockout.durationSeconds))
                keypadLockedUntil = until
                log(.keypadLockedOut, at: now) {
                    $0.method = .pin
                    $0.reason = .keypadLockedOut
                    $0.count = UInt64(self.wrongPINs)
                    $0.detail = "\(self.wrongPINs) wrong PINs in a row; keypad locked for \(self.config.pinLockout.durationSeconds) s"
                }
            }
            return decision
        }
        wrongPINs = 0
        switch judge(entry, method: .pin, at: validityTime(now)) {
        case .denied(let reason): return deny(reason, method: .pin, action: action, userID: entry.userID, keyID: nil)
        case .allowed(let officeRight): return perform(action, officeRight: officeRight, method: .pin, userID: entry.userID, keyID: nil)
        }
    }

    /// The instant validity is judged at: the lock's time, or the latest decision if the clock went back.
    private func validityTime(_ now: Date) -> Date {
        guard let floor = decisionFloor, floor > now else { return now }
        return floor
    }

    private enum Judgement { case allowed(officeRight: Bool), denied(Reason) }

    /// Whether the lock can reach an online, activated IQ now (SALTO KS "online").
    public var hasUplink: Bool { uplinks?.isOnline(id) ?? true }

    /// A tag or PIN holder's entry judged at `now`. Order: blocked, lockdown, the user's validity, the
    /// booking windows, then — online — the group schedules, or — offline — the offline list, which
    /// ignores schedules (SALTO KS offline access is 24/7) but not validity or a booking's window.
    private func judge(_ entry: AccessEntry, method: AccessMethod, at now: Date) -> Judgement {
        if entry.blocked { return .denied(.userBlocked) }
        if lockedDown && !entry.lockdownOverride { return .denied(.lockedDown) }
        if let from = entry.validFrom, now < from { return .denied(.notYetValid) }
        if let until = entry.validUntil, now >= until { return .denied(.expired) }
        let current = entry.grants.filter { $0.covers(now) }
        if current.isEmpty {
            let upcoming = entry.grants.contains { ($0.from ?? .distantFuture) > now }
            return .denied(upcoming ? .membershipNotStarted : .membershipEnded)
        }
        guard hasUplink else {
            guard method == .pin || entry.offlineAccess else { return .denied(.offlineNotPermitted) }
            return .allowed(officeRight: current.contains(where: \.officeMode))
        }
        let local = zone.local(now)
        let open = current.filter { $0.schedule.contains(local) }
        guard !open.isEmpty else { return .denied(.outsideSchedule) }
        return .allowed(officeRight: open.contains(where: \.officeMode))
    }

    // MARK: - Mobile keys

    /// Steps 2–3 of a tap: the phone's hello in, the signed reader hello out, for a phone within
    /// reach. The session is single-use. A phone hello the lock cannot answer — of another protocol
    /// version, or not valid — is a failed tap: one record (`protocol_version_unsupported`,
    /// `malformed_phone_hello`), then `TapRefused` with that decision.
    public func beginTap(phoneHello: [UInt8], distance: Double = 0) throws -> TapLockSession {
        try checkReach(distance)
        try checkPowered()
        guard let tapIdentity else { throw HardwareError.mobileKeysNotProvisioned(lockID: id) }
        do {
            return try tapIdentity.startSession(phoneHello: phoneHello, now: lockTime())
        } catch let e as TapMessageError {
            let denial: TapDenial
            if case .unsupportedVersion = e { denial = .protocolVersionUnsupported } else { denial = .malformedPhoneHello }
            throw TapRefused(decision: recordTapFailure(Reason(denial)))
        } catch {
            throw HardwareError.tapFailed("\(error)")
        }
    }

    /// A phone that reads the reader hello without having sent a phone hello speaks protocol
    /// version 1: one record `protocol_version_unsupported` (a failed check-in the platform sees),
    /// for a phone within reach of a powered, provisioned lock.
    public func refuseVersion1Tap(distance: Double = 0) throws -> Decision {
        try checkReach(distance)
        try checkPowered()
        guard tapIdentity != nil else { throw HardwareError.mobileKeysNotProvisioned(lockID: id) }
        return recordTapFailure(Reason(TapDenial.protocolVersionUnsupported))
    }

    /// Step 4: the lock evaluates the phone's presentation with its own clock and the revocation list
    /// it holds right now (atomically, inside the lock), then applies its state machine. The result
    /// message is what the lock notifies to the phone.
    public func finishTap(_ session: TapLockSession, presentation: [UInt8]) throws -> TapOutcome {
        try checkPowered()
        guard session.identity.lockID == id else { throw HardwareError.tapFailed("session of lock \(session.identity.lockID)") }
        // A session begun under other site keys (the lock was re-provisioned since its hello) answers
        // nothing: its nonce is not one the lock's current keys issued.
        let evaluation = session.identity.replayGuard === tapIdentity?.replayGuard
            ? session.evaluate(presentation, now: lockTime(), revocations: revocations)
            : .denied(.nonceUnknown, credential: nil, action: nil)
        let decision = decide(evaluation)
        let openMs = decision.outcome == .unlocked ? UInt32(decision.openTime ?? 0) * 1000 : 0
        let message = session.resultMessage(granted: decision.granted, reason: decision.reason?.rawValue, openMilliseconds: openMs)
        return TapOutcome(decision: decision, resultMessage: message)
    }

    /// A FAST repeat tap (docs/PROTOCOL.md, "FAST repeat tap"): one request, symmetric crypto only,
    /// for a phone within reach. The lock still judges the credential's claims at its own time with the
    /// revocation list it holds. `.fallBack` when the lock has no FAST for this request (unknown key, or
    /// its revocation list changed): nothing is recorded and the phone runs the full exchange.
    public func fastTap(request: [UInt8], distance: Double = 0) throws -> FastTapResult {
        try checkReach(distance)
        try checkPowered()
        guard let tapIdentity else { throw HardwareError.mobileKeysNotProvisioned(lockID: id) }
        switch tapIdentity.evaluateFast(request, now: lockTime(), revocations: revocations) {
        case .fallBack(let why):
            return .fallBack(why)
        case .evaluated(let evaluation, let resultKey):
            let decision = decide(evaluation)
            let openMs = decision.outcome == .unlocked ? UInt32(decision.openTime ?? 0) * 1000 : 0
            let message = TapLockIdentity.fastResultMessage(granted: decision.granted, reason: decision.reason?.rawValue,
                                                            openMilliseconds: openMs, resultKey: resultKey)
            return .decided(TapOutcome(decision: decision, resultMessage: message))
        }
    }

    /// Records a tap that failed before it produced a presentation to evaluate (protocol error,
    /// timeout), so failed check-ins are never invisible.
    @discardableResult
    public func recordTapFailure(_ reason: Reason, action: TapAction? = nil) -> Decision {
        deny(reason, method: .mobile, action: action ?? .open, userID: nil, keyID: nil)
    }

    private func decide(_ evaluation: TapEvaluation) -> Decision {
        switch evaluation {
        case let .denied(denial, credential, action):
            return deny(Reason(denial), method: .mobile, action: action ?? .open,
                        userID: credential?.userID, keyID: credential.map { Hex.encode($0.keyID) })
        case let .accepted(credential, action):
            // A signed key carries its own rights (schedule, locks, validity) and is judged the same with or
            // without an IQ; the directory's block and the platform's lockdown still reach it through the list.
            if accessList.blockedUsers.contains(credential.userID) {
                return deny(.userBlocked, method: .mobile, action: action, userID: credential.userID, keyID: Hex.encode(credential.keyID))
            }
            if lockedDown && !accessList.lockdownOverrideUsers.contains(credential.userID) {
                return deny(.lockedDown, method: .mobile, action: action, userID: credential.userID, keyID: Hex.encode(credential.keyID))
            }
            // The tap protocol judged the credential at the lock's time; if that clock was set back
            // since the last decision, judge it again at the later time (nonces keep the lock's time).
            let now = lockTime()
            if let identity = tapIdentity, validityTime(now) > now,
               case .denied(let reason) = identity.verifier.decide(credential, at: validityTime(now), revocations: revocations) {
                return deny(Reason(reason), method: .mobile, action: action, userID: credential.userID, keyID: Hex.encode(credential.keyID))
            }
            return perform(action, officeRight: credential.officeMode, method: .mobile, userID: credential.userID,
                           keyID: Hex.encode(credential.keyID))
        }
    }

    /// Installs (or replaces) the site keys this lock uses for mobile credentials.
    public func provision(_ identity: TapLockIdentity?) {
        tapIdentity = identity
    }

    /// Presents `certificate` in reader hellos from now on; device key, verifier and replay guard stay.
    /// The FAST keys go: they were made under the old certificate, and a phone must see the new one
    /// (and may refuse it) on a full exchange before it taps FAST again.
    public func replaceCertificate(_ certificate: [UInt8]) throws {
        guard let old = tapIdentity else { throw HardwareError.mobileKeysNotProvisioned(lockID: id) }
        tapIdentity = TapLockIdentity(lockID: old.lockID, deviceKey: old.deviceKey, certificate: certificate,
                                      verifier: old.verifier, replayGuard: old.replayGuard)
    }

    // MARK: - Remote, exit button, manual

    /// A remote command from the platform through an IQ (the IQ checks it is online and in reach).
    @discardableResult
    public func remote(_ action: TapAction = .open, userID: String?, via iqID: String) throws -> Decision {
        try checkPowered()
        if lockedDown && !(userID.map(accessList.lockdownOverrideUsers.contains) ?? false) {
            return deny(.lockedDown, method: .remote, action: action, userID: userID, keyID: nil, iqID: iqID)
        }
        // The platform authorised it; office-mode rights are the platform's to check.
        return perform(action, officeRight: true, method: .remote, userID: userID, keyID: nil, iqID: iqID)
    }

    /// The request-to-exit button of this door's controller.
    @discardableResult
    func exitRequested() throws -> Decision {
        try checkPowered()
        return perform(.open, officeRight: false, method: .exitButton, userID: nil, keyID: nil, forceUnlock: true)
    }

    /// A technician (or the QA engineer) at the lock, no credential: sets office mode on or off, or opens.
    @discardableResult
    public func manual(_ action: TapAction) throws -> Decision {
        try checkPowered()
        return perform(action, officeRight: true, method: .manual, userID: nil, keyID: nil, forceUnlock: true)
    }

    // MARK: - The state machine

    private func perform(_ action: TapAction, officeRight: Bool, method: AccessMethod, userID: String?,
                         keyID: String?, iqID: String? = nil, forceUnlock: Bool = false) -> Decision {
        let now = lockTime()
        decisionFloor = validityTime(now)
        let officeModeEnabled = config.accessType == .grantOfficeMode
        let easyWindow = officeModeEnabled && !config.easyOfficeMode.windows.isEmpty && config.easyOfficeMode.contains(zone.local(now))
        var outcome: Decision.Outcome
        var next = command
        var cause: Reason = .credential
        switch action {
        case .open:
            if easyWindow && officeRight && !forceUnlock {
                // Easy office mode: a tap by a holder of the right toggles passage.
                if command.isOffice {
                    next = .locked
                    outcome = .officeModeEnded
                } else {
                    next = .officeMode(easyUntil: easyEnd(now))
                    outcome = .officeModeStarted
                }
            } else if command.isOffice {
                outcome = .unchanged
            } else {
                next = .unlocked(until: clock.now().addingTimeInterval(TimeInterval(config.openTime)))
                outcome = .unlocked
            }
        case .officeModeOn:
            // The lock's setting before the holder's right: at a grant-only lock nobody starts office mode.
            guard officeModeEnabled else {
                return deny(.officeModeNotEnabled, method: method, action: action, userID: userID, keyID: keyID, iqID: iqID)
            }
            guard officeRight else {
                return deny(.actionNotPermitted, method: method, action: action, userID: userID, keyID: keyID, iqID: iqID)
            }
            if command.isOffice {
                outcome = .unchanged
            } else {
                next = .officeMode(easyUntil: easyWindow ? easyEnd(now) : nil)
                outcome = .officeModeStarted
            }
        case .officeModeOff:
            guard officeRight else {
                return deny(.actionNotPermitted, method: method, action: action, userID: userID, keyID: keyID, iqID: iqID)
            }
            if command.isOffice {
                next = .locked
                outcome = .officeModeEnded
            } else {
                outcome = .unchanged
            }
        }
        if method == .exitButton { cause = "exit_button" }
        let openTime: UInt16? = outcome == .unlocked ? UInt16(config.openTime) : nil
        // The new command first, so the memory stored with the grant already holds it (a grant that
        // extends an open window writes no state-change record of its own).
        switch outcome {
        case .officeModeStarted: signal(.green, .officeModeOn, at: now)
        case .officeModeEnded: signal(.green, .officeModeOff, at: now)
        default: signal(.green, .accepted, at: now)
        }
        if next != command || outcome == .unlocked {
            setCommand(next)
        }
        let record = log(.accessGranted, at: now) {
            $0.method = method
            $0.action = action
            $0.result = .granted
            $0.userID = userID
            $0.keyID = keyID
            $0.iqID = iqID
            $0.openTime = openTime
            $0.revocationListVersion = self.revocations.version
            $0.accessListVersion = self.accessList.version
        }
        let receipt = audit.lastReceipt
        settle(cause, method: method, userID: userID, keyID: keyID, iqID: iqID)
        return Decision(result: .granted, reason: nil, method: method, action: action, userID: userID, keyID: keyID,
                        outcome: outcome, openTime: openTime, state: currentState(), record: record,
                        receipt: receipt)
    }

    private func deny(_ reason: Reason, method: AccessMethod, action: TapAction, userID: String?, keyID: String?,
                      iqID: String? = nil) -> Decision {
        let now = lockTime()
        decisionFloor = validityTime(now)
        let record = log(.accessDenied, at: now) {
            $0.method = method
            $0.action = action
            $0.result = .denied
            $0.reason = reason
            $0.userID = userID
            $0.keyID = keyID
            $0.iqID = iqID
            $0.revocationListVersion = self.revocations.version
            $0.accessListVersion = self.accessList.version
        }
        signal(.red, .rejected, at: now)
        return Decision(result: .denied, reason: reason, method: method, action: action, userID: userID, keyID: keyID,
                        outcome: .none, openTime: nil, state: currentState(), record: record,
                        receipt: audit.lastReceipt)
    }

    private func signal(_ led: ReaderFeedback.LED, _ beep: ReaderFeedback.Beep, at time: Date) {
        feedback = ReaderFeedback(led: led, beep: beep, since: time, serial: feedback.serial &+ 1)
    }

    /// Clock instant at which the easy-office-mode span containing lock time `now` ends.
    private func easyEnd(_ now: Date) -> Date? {
        config.easyOfficeMode.endOfSpan(containing: now, in: zone).map { $0.addingTimeInterval(-clockOffset) }
    }

    /// Applies a new command: timers, and the relay through the door link.
    private func setCommand(_ next: Command) {
        command = next
        relockTimer?.cancel()
        relockTimer = nil
        easyTimer?.cancel()
        easyTimer = nil
        switch next {
        case .unlocked(let until):
            relockTimer = clock.schedule(at: until) { [weak self] in await self?.relockDue(until) }
        case .officeMode(let easyUntil?):
            easyTimer = clock.schedule(at: easyUntil) { [weak self] in await self?.easyOfficeDue(easyUntil) }
        default:
            break
        }
        armScheduleTimer()
        door?.command(release: next.releases, passage: next.isOffice)
    }

    /// Lock schedules matter only while the lock is released, so the timer is armed only then: an idle
    /// site of 10,000 locks keeps no timers.
    private func armScheduleTimer() {
        scheduleTimer?.cancel()
        scheduleTimer = nil
        guard command.releases, !config.lockSchedule.isEmpty,
              let next = config.lockSchedule.nextOccurrence(after: lockTime(), in: zone) else { return }
        let at = next.addingTimeInterval(-clockOffset)
        scheduleTimer = clock.schedule(at: at) { [weak self] in await self?.scheduleDue() }
    }

    private func relockDue(_ until: Date) {
        guard command == .unlocked(until: until) else { return }
        setCommand(.locked)
        if !settle(.openTimeElapsed, method: nil, userID: nil, keyID: nil, iqID: nil) { persist() }
    }

    private func easyOfficeDue(_ until: Date) {
        guard command == .officeMode(easyUntil: until) else { return }
        setCommand(.locked)
        if !settle(.easyOfficeModeEnded, method: nil, userID: nil, keyID: nil, iqID: nil) { persist() }
    }

    private func scheduleDue() {
        scheduleTimer = nil
        guard command.releases else { return }
        // Lock schedules only ever lock.
        setCommand(.locked)
        if !settle(.lockSchedule, method: nil, userID: nil, keyID: nil, iqID: nil) { persist() }
    }

    /// The state as the hardware is: the command, corrected by power, the door and the battery.
    private func currentState() -> LockState {
        if let level = batteryLevel, level == 0 { return .uncertain }
        guard let door else {
            switch command {
            case .locked: return .locked
            case .unlocked: return .unlocked
            case .officeMode: return .officeMode
            }
        }
        let s = door.snapshot
        if s.free { return command.isOffice ? .officeMode : .unlocked }
        // Secured relay, but an open door: nothing is holding it.
        return s.doorOpen ? .uncertain : .locked
    }

    /// Records a state change if the observable state moved since the last record.
    @discardableResult
    private func settle(_ reason: Reason, method: AccessMethod?, userID: String?, keyID: String?, iqID: String?) -> Bool {
        let new = currentState()
        let old = reportedState
        guard new != old else { return false }
        reportedState = new
        let kind: AuditKind
        if new == .officeMode { kind = .officeModeStarted }
        else if old == .officeMode { kind = .officeModeEnded }
        else {
            switch new {
            case .unlocked: kind = .unlocked
            case .locked: kind = .locked
            default: kind = .lockUncertain
            }
        }
        log(kind, at: lockTime()) {
            $0.reason = reason
            $0.lockState = new
            $0.method = method
            $0.userID = userID
            $0.keyID = keyID
            $0.iqID = iqID
        }
        return true
    }

    // MARK: - Door controller coupling

    /// The controller's power or door-position switch changed: re-read the physical state and record it.
    func doorChanged(_ reason: Reason) {
        if door?.snapshot.powered == false { cancelHold() }
        _ = settle(reason, method: nil, userID: nil, keyID: nil, iqID: nil)
    }

    // MARK: - Physical checks

    private func checkReach(_ distance: Double) throws {
        let reach = readerReach
        guard distance.isFinite, distance >= 0 else {
            throw HardwareError.invalidValue(field: "distance_m", message: "must be a distance ≥ 0 in metres")
        }
        guard distance <= reach else { throw HardwareError.outOfReach(lockID: id, distance: distance, reach: reach) }
    }

    private func powerProblem() -> Reason? {
        if let level = batteryLevel, level == 0 { return .batteryDepleted }
        if let door, !door.snapshot.powered { return .noPower }
        return nil
    }

    private func checkPowered() throws {
        if let reason = powerProblem() { throw HardwareError.unpowered(deviceID: id, reason: reason) }
    }

    // MARK: - Battery

    /// Sets the battery level (0…100 %). Crossing the low threshold records `battery_low` once; 0
    /// records `battery_depleted` (the lock's last gasp) and leaves it `uncertain`; a level above 0
    /// after depletion is a battery change: the lock reboots locked.
    public func setBattery(level: Int) throws {
        guard door == nil, let old = batteryLevel else { throw HardwareError.noBattery(lockID: id) }
        guard (0...100).contains(level) else {
            throw HardwareError.invalidValue(field: "battery", message: "level must be 0…100, got \(level)")
        }
        let new = UInt8(level)
        let now = lockTime()
        batteryLevel = new
        let written = audit.nextSequence
        defer { if audit.nextSequence == written { persist() } }
        let threshold = config.battery?.lowThreshold ?? 20
        if old == 0 && new > 0 {
            log(.batteryReplaced, at: now) { $0.batteryLevel = new; $0.reason = .batteryReplaced }
            batteryLowReported = false
            setCommand(.locked)
            settle(.batteryReplaced, method: nil, userID: nil, keyID: nil, iqID: nil)
        }
        if new == 0 && old > 0 {
            cancelHold()
            log(.batteryDepleted, at: now) { $0.batteryLevel = 0; $0.reason = .batteryDepleted }
            relockTimer?.cancel(); relockTimer = nil
            easyTimer?.cancel(); easyTimer = nil
            scheduleTimer?.cancel(); scheduleTimer = nil
            settle(.batteryDepleted, method: nil, userID: nil, keyID: nil, iqID: nil)
            return
        }
        if new < threshold && new > 0 && !batteryLowReported {
            batteryLowReported = true
            log(.batteryLow, at: now) {
                $0.batteryLevel = new
                $0.detail = "battery at \(new) %, below the \(threshold) % threshold"
            }
        } else if new >= threshold {
            batteryLowReported = false
        }
    }

    /// A lock that starts (or is commissioned) on a weak battery says so once, as it would at its first
    /// self-check; the flag is kept in flash, so a restart does not repeat it.
    private func reportLowBattery() {
        guard let level = batteryLevel, level > 0, !batteryLowReported else { return }
        let threshold = config.battery?.lowThreshold ?? 20
        guard level < threshold else { return }
        batteryLowReported = true
        log(.batteryLow, at: lockTime()) {
            $0.batteryLevel = level
            $0.detail = "battery at \(level) %, below the \(threshold) % threshold"
        }
    }

    // MARK: - Configuration changes

    /// Changes the open time (1…240 s); applies from the next grant.
    public func setOpenTime(seconds: Int) throws {
        guard LockConfig.openTimeRange.contains(seconds) else {
            throw HardwareError.invalidValue(field: "open_time_s", message: "must be from 1 to 240, got \(seconds)")
        }
        config.openTime = UInt8(seconds)
        persist()
    }

    /// Changes whether credentials may toggle office mode here and/or the easy-office-mode windows
    /// (nil leaves a setting as it is). A lock switched to `grant` cannot stay in office mode: a passage
    /// in progress ends at once (`office_mode_ended`, reason `access_type_changed`). New windows re-time
    /// an easy-office-mode passage in progress: it ends when the new windows' span containing now ends,
    /// or at once (reason `easy_office_mode_ended`) if now is outside them. Office mode started outside
    /// any window (held credential, app) is not tied to the windows and stays.
    public func setOfficeModeSettings(accessType: LockAccessType?, easyOfficeMode: Timetable?) {
        if let accessType { config.accessType = accessType }
        if let easyOfficeMode { config.easyOfficeMode = easyOfficeMode }
        var recorded = false
        if config.accessType == .grant, command.isOffice {
            setCommand(.locked)
            recorded = settle(.accessTypeChanged, method: nil, userID: nil, keyID: nil, iqID: nil)
        } else if easyOfficeMode != nil, case .officeMode(let easy?) = command {
            if let end = easyEnd(lockTime()) {
                if end != easy { setCommand(.officeMode(easyUntil: end)) }
            } else {
                setCommand(.locked)
                recorded = settle(.easyOfficeModeEnded, method: nil, userID: nil, keyID: nil, iqID: nil)
            }
        }
        if !recorded { persist() }
    }

    /// Moves the lock (the `Site` recomputes IQ reach).
    func move(to p: Position) { position = p }

    /// Sets how far the lock's own clock is from the site clock (a QA engineer simulating drift).
    public func setClockOffset(_ seconds: TimeInterval) throws {
        guard seconds.isFinite, abs(seconds) <= 10 * 365 * 86_400 else {
            throw HardwareError.invalidValue(field: "clock_offset_s", message: "must be within ±10 years")
        }
        clockOffset = seconds
        rearmTimersAfterTimeChange()
        persist()
    }

    /// Lock schedules and easy-office-mode windows are in lock time: when it jumps, their clock
    /// deadlines move. (Relock timers count seconds of open time and stay as they are.)
    private func rearmTimersAfterTimeChange() {
        if case .officeMode(let easy?) = command {
            let end = easyEnd(lockTime()) ?? clock.now()
            if end != easy { setCommand(.officeMode(easyUntil: end)); return }
        }
        armScheduleTimer()
    }

    // MARK: - IQ services

    /// An IQ's time sync as it arrives: the lock's clock becomes the site (network) clock now.
    public func syncTimeToSiteClock(via iqID: String) throws {
        try syncTime(to: clock.now(), via: iqID)
    }

    /// Sets the lock's clock from an IQ's time. A correction over one second is recorded.
    public func syncTime(to time: Date, via iqID: String) throws {
        try checkPowered()
        let before = lockTime()
        clockOffset = time.timeIntervalSince(clock.now())
        decisionFloor = time
        let correction = time.timeIntervalSince(before)
        if abs(correction) >= 1 {
            log(.timeSynced, at: time) {
                $0.iqID = iqID
                $0.detail = String(format: "clock corrected by %+.0f s", correction)
            }
            rearmTimersAfterTimeChange()
        }
    }

    public var isLockedDown: Bool { lockedDown }
    /// Users on the offline list of the access list the lock holds.
    public var offlineListCount: Int { accessList.offlineListCount }

    /// The platform's lockdown delivered by an IQ (at once, or at its next sync). Starting it relocks a
    /// lock that is open or in office mode; egress (exit button, manual) stays free, as life safety needs.
    /// Returns whether the state changed.
    @discardableResult
    public func setLockdown(_ on: Bool, via iqID: String) throws -> Bool {
        try checkPowered()
        guard on != lockedDown else { return false }
        lockedDown = on
        cancelHold()
        log(on ? .lockdownStarted : .lockdownEnded, at: lockTime()) {
            $0.iqID = iqID
            $0.reason = .platformLockdown
        }
        if on, command != .locked {
            setCommand(.locked)
            settle(.platformLockdown, method: nil, userID: nil, keyID: nil, iqID: iqID)
        }
        persist()
        return true
    }

    /// Accepts a newer access list pushed by an IQ; an older or equal version is ignored.
    /// Returns whether the list was installed.
    @discardableResult
    public func installAccessList(_ list: AccessList, via iqID: String) throws -> Bool {
        try checkPowered()
        guard list.version > accessList.version else { return false }
        let old = accessList.version
        accessList = list
        log(.accessListUpdated, at: lockTime(), extra: [LockMemory.accessListPart: LockMemory.encode(list)]) {
            $0.iqID = iqID
            $0.accessListVersion = list.version
            $0.detail = "access list \(old) → \(list.version): \(list.entries.count) users, \(list.tagCount) tags, \(list.pinCount) PINs"
        }
        return true
    }

    /// Accepts a signed revocation list pushed by an IQ if it is genuine (site issuer), for this site
    /// and strictly newer; otherwise keeps the list it has. Returns the version held afterwards.
    @discardableResult
    public func installRevocationList(signed bytes: [UInt8], via iqID: String) throws -> UInt64 {
        try checkPowered()
        guard let tapIdentity else { throw HardwareError.mobileKeysNotProvisioned(lockID: id) }
        let old = revocations.version
        do {
            revocations = try revocations.accepting(bytes, issuers: tapIdentity.verifier.issuers)
        } catch RevocationListError.notNewer {
            return revocations.version
        } catch {
            log(.revocationListUpdated, at: lockTime()) {
                $0.iqID = iqID
                $0.result = .denied
                $0.reason = Reason(rawValue: "revocation_list_rejected")
                $0.revocationListVersion = old
                $0.detail = "kept version \(old): \(error)"
            }
            return old
        }
        log(.revocationListUpdated, at: lockTime(), extra: [LockMemory.revocationListPart: bytes]) {
            $0.iqID = iqID
            $0.result = .granted
            $0.revocationListVersion = self.revocations.version
            $0.detail = "revocation list \(old) → \(self.revocations.version): \(self.revocations.revokedKeyIDs.count) keys revoked"
        }
        return revocations.version
    }

    /// Hands the trail to a collecting IQ, oldest first; when this empties the trail and records were
    /// lost, a `trail_overflow` record comes last. The hand-over is one durable write.
    public func collectTrail(limit: Int = .max, by iqID: String) throws -> [AuditRecord] {
        try checkPowered()
        return audit.drain(limit: limit, at: lockTime(), by: iqID, memory: memory())
    }
}

// MARK: - Flash

extension Lock {
    /// The lock's memory as it is now.
    func memory() -> [String: [UInt8]] {
        let kind: LockMemory.CommandKind
        var until: Date?
        switch command {
        case .locked: kind = .locked
        case .unlocked(let u): kind = .unlocked; until = u
        case .officeMode(let e): kind = .officeMode; until = e
        }
        let m = LockMemory(command: kind, until: until, reportedState: reportedState, batteryLevel: batteryLevel,
                           batteryLowReported: batteryLowReported, clockOffset: clockOffset, decisionFloor: decisionFloor,
                           wrongPINs: wrongPINs, keypadLockedUntil: keypadLockedUntil, openTime: config.openTime,
                           accessListVersion: accessList.version, revocationListVersion: revocations.version,
                           accessType: config.accessType, easyOfficeMode: config.easyOfficeMode, lockedDown: lockedDown)
        return [LockMemory.statePart: LockMemory.encode(m)]
    }

    /// Writes a record with the lock's memory as it is now (and `extra` parts), in one store write.
    @discardableResult
    func log(_ kind: AuditKind, at time: Date, extra: [String: [UInt8]] = [:],
             _ fill: (inout AuditRecord) -> Void = { _ in }) -> AuditRecord {
        audit.write(kind, at: time, memory: memory().merging(extra) { _, b in b }, fill)
    }

    /// Stores the lock's memory with no record: a change nothing reports (open time, clock offset, a
    /// relock the door controller already reported).
    public func persist() {
        audit.persist(memory: memory())
    }

    /// Picks up where the flash left off: re-arms the open window, office-mode and schedule timers for
    /// the restored command and drives the door controller's relay to match. An open window that ended
    /// while the emulator was down relocks at once.
    public func resume() {
        reportLowBattery()
        setCommand(command)
        if case .unlocked(let until) = command, until <= clock.now() {
            relockDue(until)
        } else {
            // Power came back between a command and the record of the state it caused: report it now.
            settle(.powerRestored, method: nil, userID: nil, keyID: nil, iqID: nil)
        }
    }
}
