import Events
import Foundation
import Hardware
import KeywayAPI
import KeywayCrypto
import MobileKey

/// What the control API (and the CLI through it) can ask of the emulator. Each operation validates
/// its input completely before touching any device, so a bad request changes nothing.
extension Emulator {
    public typealias Schemas = Components.Schemas

    // MARK: - Site and devices

    public func health() async throws -> Schemas.Health {
        Schemas.Health(status: .ok, site: config.siteID, transport: try wire(options.transport.rawValue), clock: try wire(options.clock.rawValue),
                       time: rfc3339(clock.now()), locks: config.locks.count, iqs: config.iqs.count)
    }

    public func siteDescription() throws -> Schemas.Site {
        Schemas.Site(
            id: config.siteID, name: config.name, organisation: config.organisation, timeZone: config.timeZone.identifier,
            locks: try config.locks.map { .init(id: $0.id, name: $0.name, kind: try wire($0.kind.rawValue)) },
            doorControllers: try config.doorControllers.map { .init(id: $0.id, name: $0.name, lock: $0.lockID, relay: try wire($0.relay.rawValue)) },
            iqs: config.iqs.map { .init(id: $0.id, name: $0.name) },
            accessGroups: config.accessGroups.map { .init(id: $0.id, name: $0.name) },
            users: config.users.map { .init(id: $0.id, name: $0.name) },
            issuerKeyId: Hex.encode(keys.issuerKeyID), issuerPublicKey: keys.issuerPublicKey.pem)
    }

    func lockDescription(_ lock: Lock) async throws -> Schemas.Lock {
        let s = await lock.status
        let settings = await lock.configuration
        let iqs = (try? await site.iqsReaching(lock: lock.id)) ?? []
        return Schemas.Lock(
            id: s.id, name: s.name, kind: try wire(s.kind.rawValue), state: try wire(s.state.rawValue),
            position: .init(x: s.position.x, y: s.position.y, z: s.position.z),
            openTimeS: Int(s.openTime), officeMode: s.state == .officeMode,
            accessType: try wire(settings.accessType.rawValue), easyOfficeMode: settings.easyOfficeMode.windows.map(\.description),
            revocationListVersion: Int(s.revocationListVersion), accessListVersion: Int(s.accessListVersion),
            accessListNewest: Int(await site.directory.accessListVersion),
            batteryLow: s.batteryLow, batteryLevel: s.batteryLevel.map(Int.init), powered: s.powered,
            feedback: .init(led: try wire(s.feedback.led.rawValue), beep: try wire(s.feedback.beep.rawValue)),
            iqReach: iqs, inIqReach: !iqs.isEmpty, iqOnline: await lock.hasUplink,
            lockedDown: await lock.isLockedDown, lockdownWanted: await site.directory.isLockedDown(lock.id),
            offlineList: .init(users: await lock.offlineListCount, capacity: config.locks[config.lockIndex[lock.id]!].offlineCapacity),
            trail: .init(count: s.trailCount, capacity: s.trailCapacity, pendingLoss: Int(s.trailPendingLoss)),
            lockTime: rfc3339(s.lockTime), unlockedUntil: s.unlockedUntil.map(rfc3339), doorController: s.doorController,
            certificate: certificateState(s.id))
    }

    public func locks() async throws -> [Schemas.Lock] {
        var out: [Schemas.Lock] = []
        for l in site.locks { out.append(try await lockDescription(l)) }
        return out
    }

    public func lock(id: String) async throws -> Schemas.Lock {
        guard let l = site.lock(id) else { throw APIError.notFound("lock", id) }
        return try await lockDescription(l)
    }

    /// QA's runtime changes to a lock (PATCH /v1/locks/{id}): every field is checked before any is
    /// applied, so a refused request changes nothing.
    public func updateLock(_ id: String, _ body: Schemas.LockUpdate) async throws -> Schemas.Lock {
        guard let lock = site.lock(id) else { throw APIError.notFound("lock", id) }
        guard body != Schemas.LockUpdate() else {
            throw APIError.badRequest("open_time_s", "give at least one of open_time_s, battery_percent, clock_offset_s, position, access_type, easy_office_mode")
        }
        let openTime = try Input.integer(body.openTimeS, "open_time_s", 1...240)
        let battery = try Input.integer(body.batteryPercent, "battery_percent", 0...100)
        let offset = try Input.number(body.clockOffsetS, "clock_offset_s", -315_360_000...315_360_000)
        let position = try body.position.map {
            Position(x: try Input.number($0.x, "position.x", -100_000...100_000), y: try Input.number($0.y, "position.y", -100_000...100_000),
                     z: try Input.number($0.z, "position.z", -1000...1000))
        }
        let accessType = try body.accessType.map { t -> LockAccessType in
            guard let a = LockAccessType(rawValue: t.rawValue) else { throw APIError.badRequest("access_type", "grant or grant_office_mode") }
            return a
        }
        let easy = try body.easyOfficeMode.map { try Emulator.easyOfficeMode($0) }
        if battery != nil, await lock.status.batteryLevel == nil {
            throw APIError(422, "no_battery", "lock '\(id)' is mains-powered (it has a door controller): it has no battery", field: "battery_percent")
        }
        if let openTime { try await lock.setOpenTime(seconds: openTime) }
        if let battery { try await lock.setBattery(level: battery) }
        if let offset { try await lock.setClockOffset(offset) }
        if let position { try await site.moveLock(id, to: position) }
        if accessType != nil || easy != nil { await lock.setOfficeModeSettings(accessType: accessType, easyOfficeMode: easy) }
        await settle()
        return try await lockDescription(lock)
    }

    /// The easy-office-mode windows as PATCH /v1/locks gives them: the site file's syntax, `[]` for none.
    static func easyOfficeMode(_ texts: [String]) throws -> Timetable {
        guard texts.count <= 32 else { throw APIError.badRequest("easy_office_mode", "at most 32 windows") }
        return Timetable(try texts.map { text in
            guard text.utf8.count <= 128, let w = WeeklyWindow(parsing: text) else {
                throw APIError.badRequest("easy_office_mode", "'\(text.prefix(128))' is not a weekly window like \"mon-fri 08:00-18:00\"")
            }
            return w
        })
    }

    func iqDescription(_ q: IQ) async -> Schemas.Iq {
        let s = await q.status
        return Schemas.Iq(id: s.id, name: s.name, online: s.online, activated: s.activated, activatedBy: s.activatedBy,
                          failedActivationAttempts: s.failedActivationAttempts,
                          activationLockedUntil: s.activationLockedUntil.map(rfc3339),
                          position: .init(x: s.position.x, y: s.position.y, z: s.position.z),
                          rangeM: s.range, locksInReach: s.locksInReach, lastSync: s.lastSync.map(rfc3339))
    }

    public func iqs() async -> [Schemas.Iq] {
        var out: [Schemas.Iq] = []
        for q in site.iqs { out.append(await iqDescription(q)) }
        return out
    }

    func controllerDescription(_ c: DoorController) async throws -> Schemas.DoorController {
        let s = await c.status
        return Schemas.DoorController(id: s.id, name: s.name, lock: s.lockID, relay: try wire(s.relay.rawValue), powered: s.powered,
                                      relayEnergised: s.relayEnergised, doorFree: s.doorFree, doorOpen: s.doorOpen,
                                      alarm: try s.alarm.map { try wire($0.rawValue) }, heldOpenLimitS: Int(s.heldOpenLimit))
    }

    public func controllers() async throws -> [Schemas.DoorController] {
        var out: [Schemas.DoorController] = []
        for c in site.doorControllers { out.append(try await controllerDescription(c)) }
        return out
    }

    // MARK: - Lock certificate faults

    /// Re-certifies lock `id`'s device key for a window of the test's choosing (until reset): a
    /// deliberate fault, since the emulator's own certificates are valid over the whole world span.
    public func setLockCertificate(_ id: String, _ body: Schemas.LockCertificateRequest) async throws -> Schemas.Lock {
        guard let lock = site.lock(id) else { throw APIError.notFound("lock", id) }
        let dated = body.notBefore != nil || body.notAfter != nil
        guard body.fault != nil || dated else { throw APIError.badRequest("fault", "give fault, or not_before and/or not_after") }
        let validity: ValidityWindow
        if let fault = body.fault {
            guard !dated else { throw APIError.badRequest("fault", "give either fault or not_before/not_after") }
            guard let f = EmulatedWorld.CertificateFault(rawValue: fault.rawValue) else {
                throw APIError.badRequest("fault", "one of \(EmulatedWorld.CertificateFault.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            validity = f.validity
        } else {
            let whole = EmulatedWorld.certificateValidity
            let from = try Input.date(body.notBefore, "not_before") ?? whole.notBefore
            let until = try Input.date(body.notAfter, "not_after") ?? whole.expires
            // CWT NumericDate in whole seconds; years 1970–9999 keep every reader's date code happy.
            let representable = Date(timeIntervalSince1970: 0)...Date(timeIntervalSince1970: 253_402_300_799)
            guard representable.contains(from) else { throw APIError.badRequest("not_before", "must be between 1970 and 9999") }
            guard representable.contains(until) else { throw APIError.badRequest("not_after", "must be between 1970 and 9999") }
            guard until.timeIntervalSince1970.rounded(.down) > from.timeIntervalSince1970.rounded(.down) else {
                throw APIError.badRequest("not_after", "must be at least a second after not_before")
            }
            validity = ValidityWindow(notBefore: from, expires: until)
        }
        let certificate: LockCertificate
        do {
            guard let c = try keys.recertifying(id, validity: validity, persist: false).locks[id]?.certificate else {
                throw APIError(409, "not_provisioned", "lock '\(id)' has no site keys")
            }
            certificate = c
        } catch let e as SiteKeysError {
            throw APIError(409, "not_provisioned", "lock '\(id)' cannot be re-certified: \(e)")
        }
        try await lock.replaceCertificate(certificate.bytes)
        overrideCertificate(id, certificate)
        return try await lockDescription(lock)
    }

    func certificateState(_ id: String) -> Schemas.LockCertificateState? {
        guard let c = lockCertificate(id) else { return nil }
        let state: Schemas.LockCertificateState.StatePayload
        switch c.validityError(at: clock.now()) {
        case .notYetValid?: state = .notYetValid
        case .expired?: state = .expired
        default: state = .valid
        }
        return .init(notBefore: rfc3339(c.issuedAt), notAfter: rfc3339(c.expires), state: state)
    }

    // MARK: - Keys

    /// One clock call moves simulated time at most this far: every timer in between fires in order,
    /// and a year of 60-second IQ syncs would keep the emulator busy for a long time.
    static let maxClockStep: Double = 31 * 86_400

    public func issueKey(_ body: Schemas.KeyRequest) async throws -> Schemas.IssuedKey {
        let user = try Input.text(body.user, "user", maxLength: 128)
        let lockList = try Input.texts(body.locks, "locks", maxCount: 64)
        let group = try Input.text(body.group, "group", maxLength: 128)
        guard (lockList == nil) != (group == nil) else { throw APIError.badRequest("locks", "give either locks or group") }
        var lockIDs: [String] = []
        var schedule: WeeklySchedule? = nil
        var officeMode = body.officeMode ?? false
        if let lockList {
            for id in lockList where config.lockIndex[id] == nil { throw APIError.badRequest("locks", "no lock '\(id)' in site \(config.siteID)") }
            var seen = Set<String>()
            lockIDs = lockList.filter { seen.insert($0).inserted }
        } else if let group {
            // The directory's groups as they are now (the access core adds and changes them at run time).
            guard let g = await site.directory.currentGroups.first(where: { $0.id == group }) else {
                throw APIError.badRequest("group", "no access group '\(group)'")
            }
            lockIDs = config.locks.map(\.id).filter { g.locks.includes($0) }
            guard !lockIDs.isEmpty else { throw APIError.badRequest("group", "access group '\(group)' has no locks") }
            guard lockIDs.count <= Credential.maxLocks else { throw APIError.badRequest("group", "more than \(Credential.maxLocks) locks") }
            schedule = try Emulator.weeklySchedule(g.schedule, timeZone: config.timeZone.identifier)
            if body.officeMode == nil { officeMode = g.officeMode }
        }
        let now = clock.now()
        let notBefore = try Input.date(body.notBefore, "not_before") ?? now
        let notAfter = try Input.date(body.notAfter, "not_after") ?? notBefore.addingTimeInterval(86_400)
        guard EmulatedWorld.span.contains(notBefore) else { throw APIError.badRequest("not_before", "must be between 2000 and 2100") }
        guard EmulatedWorld.span.contains(notAfter) else { throw APIError.badRequest("not_after", "must be between 2000 and 2100") }
        guard notAfter > notBefore else { throw APIError.badRequest("not_after", "must be after not_before") }
        if let windows = try Input.texts(body.schedule, "schedule", maxCount: 32) {
            var parsed: [WeeklyWindow] = []
            for w in windows {
                guard let ww = WeeklyWindow(parsing: w) else {
                    throw APIError.badRequest("schedule", "'\(w)' is not a weekly window like \"mon-fri 09:00-18:00\"")
                }
                parsed.append(ww)
            }
            schedule = try Emulator.weeklySchedule(Timetable(parsed), timeZone: config.timeZone.identifier)
        }
        let graceBefore = try Input.integer(body.graceBeforeS, "grace_before_s", 0...86_400) ?? 0
        let graceAfter = try Input.integer(body.graceAfterS, "grace_after_s", 0...86_400) ?? 0

        var holderPrivate: P256.PrivateKey? = nil
        let holderPublic: P256.PublicKey
        if let pem = try Input.text(body.holderPublicKey, "holder_public_key", maxLength: 4096) {
            holderPublic = try Emulator.parsePublicKey(pem)
        } else {
            // The built-in phone makes its own key pair; its private key never leaves the emulator.
            let k = try P256.PrivateKey()
            holderPrivate = k
            holderPublic = k.publicKey
        }
        let request = CredentialRequest(userID: user, lockIDs: lockIDs, holderKey: holderPublic,
                                        validity: ValidityWindow(notBefore: notBefore.addingTimeInterval(-Double(graceBefore)),
                                                                 expires: notAfter.addingTimeInterval(Double(graceAfter))),
                                        schedule: schedule, officeMode: officeMode)
        let issued: IssuedCredential
        do { issued = try keys.issuer.issue(request, issuedAt: now) } catch { throw APIError.badRequest("user", "\(error)") }
        let keyID = Hex.encode(issued.credential.keyID)
        try store.insert(IssuedKey(keyID: keyID, userID: user, lockIDs: lockIDs, notBefore: issued.credential.notBefore,
                                   expires: issued.credential.expires, officeMode: officeMode, credential: issued.bytes,
                                   holderPrivateKeyPEM: try holderPrivate?.pkcs8PEM(), revoked: false, issuedAt: now))
        return Schemas.IssuedKey(keyId: keyID, credential: .init(issued.bytes), user: user, locks: lockIDs,
                                 notBefore: rfc3339(issued.credential.notBefore), notAfter: rfc3339(issued.credential.expires),
                                 officeMode: officeMode, holder: holderPrivate == nil ? .external : .builtIn)
    }

    public func listKeys(user: String?) throws -> [Schemas.Key] {
        try store.keys(user: user).map(Emulator.keyDescription)
    }

    static func keyDescription(_ k: IssuedKey) -> Schemas.Key {
        Schemas.Key(id: k.keyID, keyId: k.keyID, user: k.userID, locks: k.lockIDs, notBefore: rfc3339(k.notBefore), notAfter: rfc3339(k.expires),
                    officeMode: k.officeMode, revoked: k.revoked, holder: k.holderPrivateKeyPEM == nil ? .external : .builtIn)
    }

    /// Revokes a key: a new signed revocation list version, which IQs push to the locks they reach.
    public func revokeKey(_ id: String) async throws -> Schemas.Revocation {
        guard try store.key(id: id) != nil, let raw = Hex.decode(id) else { throw APIError.notFound("key", id) }
        let version = try await site.directory.revoke(keyIDs: [raw])
        let list = await site.directory.revocationList
        let signed = try keys.issuer.sign(list)
        try store.revoke(id: id, newList: list, signed: signed)
        return Schemas.Revocation(keyId: id, revoked: true, revocationListVersion: Int(version))
    }

    static func parsePublicKey(_ text: String) throws -> P256.PublicKey {
        if text.contains("BEGIN PUBLIC KEY") {
            do { return try P256.PublicKey(pem: text) } catch { throw APIError.badRequest("holder_public_key", "not a P-256 SPKI PEM: \(error)") }
        }
        guard let data = Data(base64Encoded: text) else { throw APIError.badRequest("holder_public_key", "PEM, or base64 of a 65-byte point / SPKI DER") }
        let b = Array(data)
        do { return b.count <= 65 ? try P256.PublicKey(uncompressed: b) : try P256.PublicKey(spkiDER: b) }
        catch { throw APIError.badRequest("holder_public_key", "not a P-256 public key: \(error)") }
    }

    /// A group's weekly timetable as the credential's schedule claim (site time zone; windows that
    /// cross midnight split in two).
    static func weeklySchedule(_ t: Timetable, timeZone: String) throws -> WeeklySchedule? {
        if t.windows.contains(where: \.isAlways) { return nil }
        var windows: [WeeklySchedule.Window] = []
        for w in t.windows {
            for d in 0..<7 where w.days.contains(weekday: d) {
                let s = Int(w.start.minutes), e = Int(w.end.minutes)
                if e > s {
                    windows.append(try WeeklySchedule.Window(weekday: d + 1, startMinute: s, endMinute: e))
                } else {
                    windows.append(try WeeklySchedule.Window(weekday: d + 1, startMinute: s, endMinute: 1440))
                    if e > 0 { windows.append(try WeeklySchedule.Window(weekday: (d + 1) % 7 + 1, startMinute: 0, endMinute: e)) }
                }
            }
        }
        return try WeeklySchedule(timeZone: timeZone, windows: windows)
    }

    // MARK: - Taps

    public func tap(_ body: Schemas.TapRequest) async throws -> Schemas.TapResult {
        let lockID = try Input.text(body.lock, "lock", maxLength: 128)
        guard let lock = site.lock(lockID) else { throw APIError.notFound("lock", lockID) }
        let action = try Emulator.tapAction(body.action)
        let distance = try Input.number(body.distanceM, "distance_m", 0...1000) ?? 0
        let given = [body.user, body.keyId, body.tag, body.pin].compactMap { $0 }
        guard given.count == 1 else { throw APIError.badRequest("user", "give exactly one of user, key_id, tag, pin") }

        let decision: Decision
        var keyID: String? = nil
        var phoneVerified: Bool? = nil
        var protocolVersion: Int? = nil
        var mode: Schemas.TapResult.ModePayload? = nil
        if let text = body.tag {
            guard let uid = TagUID(hex: try Input.text(text, "tag", maxLength: 32)) else { throw APIError.badRequest("tag", "hex UID of 4 to 10 bytes") }
            decision = try await lock.presentTag(uid, action: action, distance: distance)
        } else if let pin = body.pin {
            guard try Input.text(pin, "pin", maxLength: 16).allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw APIError.badRequest("pin", "digits only")
            }
            decision = try await lock.enterPIN(pin, action: action)
        } else {
            let key = try pickKey(for: body, lockID: lockID)
            keyID = key.keyID
            let phoneMode: BuiltInPhoneMode = body.phone == .nonConformant ? .nonConformant : .conformant
            let outcome = try await radio.tap(lockID: lockID, key: key, action: action, distance: distance,
                                              siteID: config.siteID, issuers: keys.trustedIssuers, cache: certificateCache, now: clock.now(),
                                              phoneMode: phoneMode, allowFast: body.fast ?? true)
            protocolVersion = Int(outcome.protocolVersion)
            mode = try wire(outcome.mode)
            switch outcome {
            case .decided(let d, let phoneResult, _, _):
                decision = d
                if let r = phoneResult { phoneVerified = r.granted == decision.granted }
            case .phoneRefused(let why):
                // The phone walked away after the hello: nothing was presented, the lock decided
                // nothing and recorded nothing, and its state is unchanged.
                let state = await lock.status.state
                return Schemas.TapResult(result: .phoneRefused, reason: why.code, message: why.description, lock: lockID,
                                         action: try wire(action.name), method: .mobile, state: try wire(state.rawValue),
                                         openMs: 0, eventId: nil, user: key.userID, keyId: key.keyID,
                                         _protocol: protocolVersion, mode: mode)
            }
        }
        let eventID = await bridge.eventID(for: decision)
        pokeDelivery()
        return Schemas.TapResult(result: decision.granted ? .granted : .denied, reason: decision.reason?.rawValue, lock: lockID,
                                 action: try wire(action.name), method: try wire(decision.method.rawValue), state: try wire(decision.state.rawValue),
                                 openMs: decision.outcome == .unlocked ? Int(decision.openTime ?? 0) * 1000 : 0,
                                 eventId: eventID, user: decision.userID, keyId: keyID, phoneVerifiedResult: phoneVerified,
                                 _protocol: protocolVersion, mode: mode)
    }

    static func tapAction(_ action: Schemas.Action?) throws -> TapAction {
        guard let action else { return .open }
        guard let a = TapAction(name: action.rawValue) else {
            throw APIError.badRequest("action", "one of \(TapAction.allCases.map(\.name).joined(separator: ", "))")
        }
        return a
    }

    /// The key the built-in phone presents: the named one, or the user's most useful one for this
    /// lock (valid and unrevoked first; otherwise the newest, so the denial shows why).
    func pickKey(for body: Schemas.TapRequest, lockID: String) throws -> IssuedKey {
        if let id = body.keyId {
            let id = try Input.text(id, "key_id", maxLength: 64)
            guard let k = try store.key(id: id) else { throw APIError.notFound("key", id) }
            return k
        }
        let user = try Input.text(body.user ?? "", "user", maxLength: 128)
        let all = try store.keys(user: user)
        guard let newest = all.last else { throw APIError(409, "no_key", "user '\(user)' holds no key; issue one with POST /v1/keys", field: "user") }
        let now = clock.now()
        let forLock = all.filter { $0.lockIDs.contains(lockID) }
        if let best = forLock.last(where: { !$0.revoked && $0.notBefore <= now && now < $0.expires && $0.holderPrivateKeyPEM != nil }) { return best }
        return forLock.last ?? newest
    }

    // MARK: - Remote, doors, controllers, IQs

    public func remoteOpen(_ lockID: String, _ body: Schemas.RemoteOpenRequest) async throws -> Schemas.RemoteOpenResult {
        guard site.lock(lockID) != nil else { throw APIError.notFound("lock", lockID) }
        let action = try Emulator.tapAction(body.action)
        let user = try Input.text(body.user, "user", maxLength: 128)
        let requestedIQ = try Input.text(body.iq, "iq", maxLength: 128)
        let reaching = try await site.iqsReaching(lock: lockID)
        var chosen: IQ? = nil
        for id in reaching where requestedIQ == nil || requestedIQ == id {
            if let q = site.iq(id), await q.isOnline, await q.isActivated { chosen = q; break }
        }
        guard let iq = chosen else {
            if reaching.isEmpty { throw APIError(409, "not_in_reach", "no IQ reaches lock '\(lockID)'") }
            throw APIError(409, "iq_offline", "no online, activated IQ reaching lock '\(lockID)' (\(reaching.joined(separator: ", ")))")
        }
        let decision: Decision
        decision = try await iq.remote(action, lockID: lockID, userID: user)
        let eventID = await bridge.eventID(for: decision)
        pokeDelivery()
        return Schemas.RemoteOpenResult(result: decision.granted ? .granted : .denied, reason: decision.reason?.rawValue, via: iq.id,
                                        state: try wire(decision.state.rawValue), eventId: eventID,
                                        openMs: decision.outcome == .unlocked ? Int(decision.openTime ?? 0) * 1000 : 0)
    }

    func controller(forDoor id: String) throws -> DoorController {
        if let c = site.doorController(id) { return c }
        if let c = site.doorController(forLock: id) { return c }
        throw APIError.notFound("door (controller or lock with a controller)", id)
    }

    public func doorSensor(_ id: String, _ body: Schemas.DoorSensorRequest) async throws -> Schemas.DoorController {
        let c = try controller(forDoor: id)
        try await c.setDoor(open: body.open)
        await settle()
        return try await controllerDescription(c)
    }

    public func doorExit(_ id: String) async throws -> Schemas.ExitResult {
        let c = try controller(forDoor: id)
        let decision: Decision
        decision = try await c.pressRequestToExit()
        let eventID = await bridge.eventID(for: decision)
        return Schemas.ExitResult(result: decision.granted ? .granted : .denied, reason: decision.reason?.rawValue, eventId: eventID,
                                  openMs: Int(decision.openTime ?? 0) * 1000)
    }

    public func controllerPower(_ id: String, _ body: Schemas.PowerRequest) async throws -> Schemas.DoorController {
        guard let c = site.doorController(id) else { throw APIError.notFound("door controller", id) }
        await c.setPower(body.on)
        await settle()
        return try await controllerDescription(c)
    }

    public func iqOnline(_ id: String, _ body: Schemas.IQOnlineRequest) async throws -> Schemas.Iq {
        guard let q = site.iq(id) else { throw APIError.notFound("IQ", id) }
        _ = await q.setOnline(body.online)
        await settle()
        return await iqDescription(q)
    }

    public func iqPosition(_ id: String, _ body: Schemas.IQPositionRequest) async throws -> Schemas.Iq {
        guard let q = site.iq(id) else { throw APIError.notFound("IQ", id) }
        let x = try Input.number(body.x, "x", -100_000...100_000)
        let y = try Input.number(body.y, "y", -100_000...100_000)
        // No z keeps the IQ's height: moving a ceiling IQ along the floor plan must not drop it to the floor.
        let current = await q.position
        let z = try Input.number(body.z, "z", -1000...1000) ?? current.z
        let range = try Input.number(body.rangeM, "range_m", 0.1...100)
        try await site.moveIQ(id, to: Position(x: x, y: y, z: z), range: range)
        await settle()
        return await iqDescription(q)
    }

    /// POST /v1/iqs/{id}/activation: the IQ counts wrong PINs and locks activation after too many
    /// (IQ.activate); the user must be one of the directory's, and becomes the only one who may deactivate.
    public func activateIQ(_ id: String, _ body: Schemas.IQActivationRequest) async throws -> Schemas.Iq {
        guard let q = site.iq(id) else { throw APIError.notFound("IQ", id) }
        let user = try await directoryUser(body.user)
        let pin = try Input.text(body.pin, "pin", maxLength: 12)
        guard pin.utf8.count >= 4, pin.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw APIError.badRequest("pin", "4 to 12 digits") }
        do {
            try await q.activate(pin: pin, by: user)
        } catch {
            // A refusal is recorded by the IQ (wrong PIN, lockout): it reaches the journal before the answer.
            await settle()
            throw error
        }
        await settle()
        return await iqDescription(q)
    }

    /// DELETE /v1/iqs/{id}/activation?user=…: only the activating user may (IQ.deactivate).
    public func deactivateIQ(_ id: String, user: String) async throws -> Schemas.Iq {
        guard let q = site.iq(id) else { throw APIError.notFound("IQ", id) }
        let user = try await directoryUser(user)
        try await q.deactivate(by: user)
        await settle()
        return await iqDescription(q)
    }

    /// A user id given in a request that must name a user of the directory.
    func directoryUser(_ text: String) async throws -> String {
        let id = try Input.text(text, "user", maxLength: 64)
        guard await site.directory.currentUsers.contains(where: { $0.id == id }) else {
            throw APIError.badRequest("user", "no user '\(id)' in the directory (/v1/users)")
        }
        return id
    }

    public func iqSync(_ id: String) async throws -> Schemas.IQSyncReport {
        guard let q = site.iq(id) else { throw APIError.notFound("IQ", id) }
        let r = await q.syncNow()
        await settle()
        return Schemas.IQSyncReport(iq: id, locksSynced: r.locksSynced, locksUnreachable: r.locksUnreachable,
                                    recordsCollected: r.recordsCollected, skipped: r.skipped?.rawValue)
    }

    // MARK: - Clock

    public func clockDescription() throws -> Schemas.Clock {
        Schemas.Clock(mode: try wire(options.clock.rawValue), now: rfc3339(clock.now()), timeZone: config.timeZone.identifier)
    }

    public func advanceClock(_ body: Schemas.ClockAdvanceRequest) async throws -> Schemas.Clock {
        guard let s = simulatedClock else { throw APIError(409, "real_clock", "the clock is real; start serve with --clock simulated") }
        let seconds = try Input.number(body.seconds, "seconds", 0...Emulator.maxClockStep)
        try Emulator.requireInWorld(s.now().addingTimeInterval(seconds), field: "seconds")
        await s.advance(by: seconds)
        await settle()
        return try clockDescription()
    }

    public func setClock(_ body: Schemas.ClockSetRequest) async throws -> Schemas.Clock {
        guard let s = simulatedClock else { throw APIError(409, "real_clock", "the clock is real; start serve with --clock simulated") }
        let t = try Input.date(body.time, "time")
        guard abs(t.timeIntervalSince(s.now())) <= Emulator.maxClockStep else {
            // Valid on its own, refused because of where the clock is now: a conflict, not a bad request.
            throw APIError(409, "clock_step_too_large", "at most 31 days from the current simulated time per call", field: "time")
        }
        try Emulator.requireInWorld(t, field: "time")
        await s.set(to: t)
        await settle()
        return try clockDescription()
    }

    /// The simulated clock stays inside the world span, where the site's own PKI is valid.
    static func requireInWorld(_ t: Date, field: String) throws {
        guard EmulatedWorld.span.contains(t) else {
            throw APIError(409, "clock_out_of_range", "the simulated clock stays between 2000-01-01 and 2100-01-01", field: field)
        }
    }

    /// Lets timer-driven device work triggered by a control action reach the journal before answering.
    func settle() async {
        await simulatedClock?.runUntilIdle()
        await bridge.flush()
        pokeDelivery()
    }

    // MARK: - Events

    public func events(types: [String], lock: String?, since: Date?, after: Int64?, limit: Int, all: Bool) async throws -> [Schemas.Event] {
        var set = Set<EventType>()
        for t in types {
            guard let et = EventType(name: t) else { throw APIError.badRequest("type", "unknown event type '\(t)'") }
            set.insert(et)
        }
        await bridge.flush()
        let floor = all ? nil : resetPosition
        let query = EventQuery(types: set, lock: lock, since: since, after: max(after ?? 0, floor ?? 0) == 0 ? nil : max(after ?? 0, floor ?? 0),
                               limit: limit)
        return try await journal.events(query).map(Emulator.eventDescription)
    }

    /// The journal's CloudEvents JSON (the bytes a webhook gets: one encoding of an event) read back
    /// as the document's `Event`, plus its place in the journal.
    static func eventDescription(_ e: RecordedEvent) throws -> Schemas.Event {
        let c = try APIJSON.decoder.decode(CloudEvent.self, from: Data(e.cloudEventJSON()))
        return Schemas.Event(specversion: c.specversion, id: c.id, source: c.source, _type: c.type, time: c.time,
                             datacontenttype: c.datacontenttype, data: c.data, stage: try wire(e.stage.rawValue), position: Int(e.position))
    }

    private struct CloudEvent: Decodable {
        let specversion: Schemas.Event.SpecversionPayload
        let id: String
        let source: String
        let type: Schemas.EventType
        let time: String
        let datacontenttype: Schemas.Event.DatacontenttypePayload
        let data: Schemas.EventData
    }
}

/// A domain value as the document's enum of the same raw value. A value the document does not list is
/// a bug on this side, answered as a 500 that names nothing (the doc test and schemathesis catch it).
func wire<E: RawRepresentable>(_ raw: String) throws -> E where E.RawValue == String {
    guard let e = E(rawValue: raw) else { throw APIError(500, "internal", "internal error") }
    return e
}

extension APIError {
    /// The one mapping of a device's refusal to the API (ControlAPI's error middleware applies it).
    static func hardware(_ e: HardwareError) -> APIError {
        switch e {
        case .outOfReach: return APIError(422, "out_of_reach", "\(e)", field: "distance_m")
        case .unpowered: return APIError(409, "unpowered", "\(e)")
        case .noKeypad: return APIError(422, "no_keypad", "\(e)", field: "pin")
        case .noBattery: return APIError(422, "no_battery", "\(e)")
        case .mobileKeysNotProvisioned: return APIError(409, "not_provisioned", "\(e)")
        case .invalidValue(let field, let message): return APIError(400, "invalid_field", message, field: field)
        case .unknownLock(let id): return .notFound("lock", id)
        case .unknownDoorController(let id): return .notFound("door controller", id)
        case .unknownIQ(let id): return .notFound("IQ", id)
        case .noDoorPositionSwitch: return APIError(422, "no_door_position_switch", "\(e)")
        case .noRequestToExit: return APIError(422, "no_request_to_exit", "\(e)")
        case .iqOffline: return APIError(409, "iq_offline", "\(e)")
        case .iqNotActivated: return APIError(409, "iq_not_activated", "\(e)")
        case .notInReach: return APIError(409, "not_in_reach", "\(e)")
        case .wrongActivationPIN: return APIError(403, "wrong_activation_pin", "\(e)", field: "pin")
        case .activationLockedOut: return APIError(409, "activation_locked_out", "\(e)")
        case .iqAlreadyActivated: return APIError(409, "iq_already_activated", "\(e)")
        case .notActivatingUser: return APIError(403, "not_activating_user", "\(e)", field: "user")
        case .tapFailed: return APIError(500, "tap_failed", "\(e)")
        }
    }
}
