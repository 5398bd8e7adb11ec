import Events
import Foundation
import Hardware
import KeywayCrypto
import MobileKey

/// What the control API (and the CLI through it) can ask of the emulator. Each operation validates
/// its input completely before touching any device, so a bad request changes nothing.
extension Emulator {
    // MARK: - Site and devices

    public func healthJSON() async -> [String: Any] {
        ["status": "ok", "site": config.siteID, "transport": options.transport.rawValue, "clock": options.clock.rawValue,
         "time": rfc3339(clock.now()), "locks": config.locks.count, "iqs": config.iqs.count]
    }

    public func siteJSON() async -> [String: Any] {
        [
            "id": config.siteID, "name": config.name, "organisation": config.organisation,
            "time_zone": config.timeZone.identifier,
            "locks": config.locks.map { ["id": $0.id, "name": $0.name, "kind": $0.kind.rawValue] as [String: Any] },
            "door_controllers": config.doorControllers.map { ["id": $0.id, "name": $0.name, "lock": $0.lockID, "relay": $0.relay.rawValue] as [String: Any] },
            "iqs": config.iqs.map { ["id": $0.id, "name": $0.name] as [String: Any] },
            "access_groups": config.accessGroups.map { ["id": $0.id, "name": $0.name] as [String: Any] },
            "users": config.users.map { ["id": $0.id, "name": $0.name] as [String: Any] },
            "issuer_key_id": Hex.encode(keys.issuerKeyID),
            "issuer_public_key": keys.issuerPublicKey.pem,
        ]
    }

    func lockJSON(_ lock: Lock) async -> [String: Any] {
        let s = await lock.status
        let iqs = (try? await site.iqsReaching(lock: lock.id)) ?? []
        var o: [String: Any] = [
            "id": s.id, "name": s.name, "kind": s.kind.rawValue, "state": s.state.rawValue,
            "position": ["x": s.position.x, "y": s.position.y, "z": s.position.z],
            "open_time_s": Int(s.openTime), "office_mode": s.state == .officeMode,
            "revocation_list_version": Int(s.revocationListVersion), "access_list_version": Int(s.accessListVersion),
            "battery_low": s.batteryLow, "powered": s.powered,
            "feedback": ["led": s.feedback.led.rawValue, "beep": s.feedback.beep.rawValue],
            "iq_reach": iqs, "in_iq_reach": !iqs.isEmpty,
            "trail": ["count": s.trailCount, "capacity": s.trailCapacity, "pending_loss": Int(s.trailPendingLoss)],
            "lock_time": rfc3339(s.lockTime), "door_controller": s.doorController,
        ]
        if let b = s.batteryLevel { o["battery_level"] = Int(b) }
        if let u = s.unlockedUntil { o["unlocked_until"] = rfc3339(u) }
        if let c = certificateJSON(s.id) { o["certificate"] = c }
        return o
    }

    public func locksJSON() async -> [[String: Any]] {
        var out: [[String: Any]] = []
        for l in site.locks { out.append(await lockJSON(l)) }
        return out
    }

    public func lockJSON(id: String) async throws -> [String: Any] {
        guard let l = site.lock(id) else { throw APIError.notFound("lock", id) }
        return await lockJSON(l)
    }

    public func iqsJSON() async -> [[String: Any]] {
        var out: [[String: Any]] = []
        for q in site.iqs {
            let s = await q.status
            var o: [String: Any] = ["id": s.id, "name": s.name, "online": s.online, "activated": s.activated,
                                    "position": ["x": s.position.x, "y": s.position.y, "z": s.position.z],
                                    "range_m": s.range, "locks_in_reach": s.locksInReach]
            if let t = s.lastSync { o["last_sync"] = rfc3339(t) }
            out.append(o)
        }
        return out
    }

    public func controllersJSON() async -> [[String: Any]] {
        var out: [[String: Any]] = []
        for c in site.doorControllers {
            let s = await c.status
            var o: [String: Any] = ["id": s.id, "name": s.name, "lock": s.lockID, "relay": s.relay.rawValue, "powered": s.powered,
                                    "relay_energised": s.relayEnergised, "door_free": s.doorFree, "held_open_limit_s": Int(s.heldOpenLimit)]
            if let open = s.doorOpen { o["door_open"] = open }
            if let a = s.alarm { o["alarm"] = a.rawValue }
            out.append(o)
        }
        return out
    }

    // MARK: - Lock certificate faults

    public static let certificateFields: Set<String> = ["fault", "not_before", "not_after"]

    /// Re-certifies lock `id`'s device key for a window of the test's choosing (until reset): a
    /// deliberate fault, since the emulator's own certificates are valid over the whole world span.
    public func setLockCertificate(_ id: String, _ body: JSONBody) async throws -> [String: Any] {
        guard let lock = site.lock(id) else { throw APIError.notFound("lock", id) }
        let fault = try body.string("fault", maxLength: 32)
        let dated = body.has("not_before") || body.has("not_after")
        guard fault != nil || dated else { throw APIError.badRequest("fault", "give fault, or not_before and/or not_after") }
        let validity: ValidityWindow
        if let fault {
            guard !dated else { throw APIError.badRequest("fault", "give either fault or not_before/not_after") }
            guard let f = EmulatedWorld.CertificateFault(rawValue: fault) else {
                throw APIError.badRequest("fault", "one of \(EmulatedWorld.CertificateFault.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            validity = f.validity
        } else {
            let whole = EmulatedWorld.certificateValidity
            let from = try body.date("not_before") ?? whole.notBefore
            let until = try body.date("not_after") ?? whole.expires
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
        do { try await lock.replaceCertificate(certificate.bytes) } catch let e as HardwareError { throw APIError.hardware(e) }
        overrideCertificate(id, certificate)
        return await lockJSON(lock)
    }

    func certificateJSON(_ id: String) -> [String: Any]? {
        guard let c = lockCertificate(id) else { return nil }
        let state: String
        switch c.validityError(at: clock.now()) {
        case .notYetValid?: state = "not_yet_valid"
        case .expired?: state = "expired"
        default: state = "valid"
        }
        return ["not_before": rfc3339(c.issuedAt), "not_after": rfc3339(c.expires), "state": state]
    }

    // MARK: - Keys

    public static let keyFields: Set<String> = ["user", "locks", "group", "not_before", "not_after", "grace_before_s", "grace_after_s",
                                          "office_mode", "holder_public_key", "schedule"]
    /// One clock call moves simulated time at most this far: every timer in between fires in order,
    /// and a year of 60-second IQ syncs would keep the emulator busy for a long time.
    static let maxClockStep: Double = 31 * 86_400

    public func issueKey(_ body: JSONBody) async throws -> [String: Any] {
        let user = try body.string("user", required: true, maxLength: 128)!
        let lockList = try body.strings("locks")
        let group = try body.string("group", maxLength: 128)
        guard (lockList == nil) != (group == nil) else { throw APIError.badRequest("locks", "give either locks or group") }
        var lockIDs: [String] = []
        var schedule: WeeklySchedule? = nil
        var officeMode = try body.bool("office_mode") ?? false
        if let lockList {
            for id in lockList where config.lockIndex[id] == nil { throw APIError.badRequest("locks", "no lock '\(id)' in site \(config.siteID)") }
            lockIDs = Array(NSOrderedSet(array: lockList)) as! [String]
        } else if let group {
            guard let g = config.accessGroups.first(where: { $0.id == group }) else { throw APIError.badRequest("group", "no access group '\(group)'") }
            lockIDs = config.locks.map(\.id).filter { g.locks.includes($0) }
            guard !lockIDs.isEmpty else { throw APIError.badRequest("group", "access group '\(group)' has no locks") }
            guard lockIDs.count <= Credential.maxLocks else { throw APIError.badRequest("group", "more than \(Credential.maxLocks) locks") }
            schedule = try Emulator.weeklySchedule(g.schedule, timeZone: config.timeZone.identifier)
            if body.has("office_mode") == false { officeMode = g.officeMode }
        }
        let now = clock.now()
        let notBefore = try body.date("not_before") ?? now
        let notAfter = try body.date("not_after") ?? notBefore.addingTimeInterval(86_400)
        guard EmulatedWorld.span.contains(notBefore) else { throw APIError.badRequest("not_before", "must be between 2000 and 2100") }
        guard EmulatedWorld.span.contains(notAfter) else { throw APIError.badRequest("not_after", "must be between 2000 and 2100") }
        guard notAfter > notBefore else { throw APIError.badRequest("not_after", "must be after not_before") }
        if let windows = try body.strings("schedule", maxCount: 32) {
            var parsed: [WeeklyWindow] = []
            for w in windows {
                guard let ww = WeeklyWindow(parsing: w) else {
                    throw APIError.badRequest("schedule", "'\(w)' is not a weekly window like \"mon-fri 09:00-18:00\"")
                }
                parsed.append(ww)
            }
            schedule = try Emulator.weeklySchedule(Timetable(parsed), timeZone: config.timeZone.identifier)
        }
        let graceBefore = try body.integer("grace_before_s", range: 0...86_400) ?? 0
        let graceAfter = try body.integer("grace_after_s", range: 0...86_400) ?? 0

        var holderPrivate: P256.PrivateKey? = nil
        let holderPublic: P256.PublicKey
        if let pem = try body.string("holder_public_key", maxLength: 4096) {
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
        return ["key_id": keyID, "credential": Data(issued.bytes).base64EncodedString(), "user": user, "locks": lockIDs,
                "not_before": rfc3339(issued.credential.notBefore), "not_after": rfc3339(issued.credential.expires),
                "office_mode": officeMode, "holder": holderPrivate == nil ? "external" : "built_in"]
    }

    public func keysJSON(user: String?) throws -> [[String: Any]] {
        try store.keys(user: user).map(Emulator.keyJSON)
    }

    static func keyJSON(_ k: IssuedKey) -> [String: Any] {
        ["id": k.keyID, "key_id": k.keyID, "user": k.userID, "locks": k.lockIDs, "not_before": rfc3339(k.notBefore),
         "not_after": rfc3339(k.expires), "office_mode": k.officeMode, "revoked": k.revoked,
         "holder": k.holderPrivateKeyPEM == nil ? "external" : "built_in"]
    }

    /// Revokes a key: a new signed revocation list version, which IQs push to the locks they reach.
    public func revokeKey(_ id: String) async throws -> [String: Any] {
        guard let k = try store.key(id: id) else { throw APIError.notFound("key", id) }
        guard let raw = Hex.decode(id) else { throw APIError.notFound("key", id) }
        let version = try await site.directory.revoke(keyIDs: [raw])
        let list = await site.directory.revocationList
        let signed = try keys.issuer.sign(list)
        try store.revoke(id: id, newList: list, signed: signed)
        _ = k
        return ["key_id": id, "revoked": true, "revocation_list_version": Int(version)]
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

    public static let tapFields: Set<String> = ["lock", "user", "key_id", "tag", "pin", "action", "distance_m"]

    public func tap(_ body: JSONBody) async throws -> [String: Any] {
        let lockID = try body.string("lock", required: true, maxLength: 128)!
        guard let lock = site.lock(lockID) else { throw APIError.notFound("lock", lockID) }
        let actionName = try body.string("action", maxLength: 32) ?? "open"
        guard let action = TapAction(name: actionName) else {
            throw APIError.badRequest("action", "one of \(TapAction.allCases.map(\.name).joined(separator: ", "))")
        }
        let distance = try body.number("distance_m", range: 0...1000) ?? 0
        let who = ["user", "key_id", "tag", "pin"].filter { body.has($0) }
        guard who.count == 1 else { throw APIError.badRequest("user", "give exactly one of user, key_id, tag, pin") }

        let decision: Decision
        var extra: [String: Any] = [:]
        do {
            switch who[0] {
            case "tag":
                let text = try body.string("tag", maxLength: 32)!
                guard let uid = TagUID(hex: text) else { throw APIError.badRequest("tag", "hex UID of 4 to 10 bytes") }
                decision = try await lock.presentTag(uid, action: action, distance: distance)
            case "pin":
                let pin = try body.string("pin", maxLength: 16)!
                guard pin.allSatisfy({ $0.isASCII && $0.isNumber }) else { throw APIError.badRequest("pin", "digits only") }
                decision = try await lock.enterPIN(pin, action: action)
            default:
                let key = try pickKey(for: body, lockID: lockID)
                extra["key_id"] = key.keyID
                let outcome = try await radio.tap(lockID: lockID, key: key, action: action, distance: distance,
                                                  siteID: config.siteID, issuers: keys.trustedIssuers, cache: certificateCache, now: clock.now())
                switch outcome {
                case .decided(let d, let phoneResult):
                    decision = d
                    if let r = phoneResult { extra["phone_verified_result"] = r.granted == decision.granted }
                case .phoneRefused(let why):
                    // The phone walked away after the hello: nothing was presented, the lock decided
                    // nothing and recorded nothing, and its state is unchanged.
                    let state = await lock.status.state
                    return ["result": "phone_refused", "lock": lockID, "action": action.name, "method": "mobile",
                            "state": state.rawValue, "open_ms": 0, "reason": why.code, "message": why.description,
                            "event_id": NSNull(), "key_id": key.keyID, "user": key.userID]
                }
            }
        } catch let e as HardwareError {
            throw APIError.hardware(e)
        }
        let eventID = await bridge.eventID(for: decision)
        pokeDelivery()
        var out: [String: Any] = ["result": decision.granted ? "granted" : "denied", "lock": lockID, "action": action.name,
                                  "method": decision.method.rawValue, "state": decision.state.rawValue,
                                  "open_ms": decision.outcome == .unlocked ? Int(decision.openTime ?? 0) * 1000 : 0]
        out["reason"] = decision.reason?.rawValue ?? NSNull()
        out["event_id"] = eventID ?? NSNull()
        if let u = decision.userID { out["user"] = u }
        for (k, v) in extra { out[k] = v }
        return out
    }

    /// The key the built-in phone presents: the named one, or the user's most useful one for this
    /// lock (valid and unrevoked first; otherwise the newest, so the denial shows why).
    func pickKey(for body: JSONBody, lockID: String) throws -> IssuedKey {
        if let id = try body.string("key_id", maxLength: 64) {
            guard let k = try store.key(id: id) else { throw APIError.notFound("key", id) }
            return k
        }
        let user = try body.string("user", maxLength: 128)!
        let all = try store.keys(user: user)
        guard !all.isEmpty else { throw APIError(409, "no_key", "user '\(user)' holds no key; issue one with POST /v1/keys", field: "user") }
        let now = clock.now()
        let forLock = all.filter { $0.lockIDs.contains(lockID) }
        if let best = forLock.last(where: { !$0.revoked && $0.notBefore <= now && now < $0.expires && $0.holderPrivateKeyPEM != nil }) { return best }
        return forLock.last ?? all.last!
    }

    // MARK: - Remote, doors, controllers, IQs

    public func remoteOpen(_ lockID: String, _ body: JSONBody) async throws -> [String: Any] {
        guard site.lock(lockID) != nil else { throw APIError.notFound("lock", lockID) }
        let actionName = try body.string("action", maxLength: 32) ?? "open"
        guard let action = TapAction(name: actionName) else { throw APIError.badRequest("action", "one of open, office_mode_on, office_mode_off") }
        let user = try body.string("user", maxLength: 128)
        let requestedIQ = try body.string("iq", maxLength: 128)
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
        do { decision = try await iq.remote(action, lockID: lockID, userID: user) } catch let e as HardwareError { throw APIError.hardware(e) }
        let eventID = await bridge.eventID(for: decision)
        pokeDelivery()
        return ["result": decision.granted ? "granted" : "denied", "reason": decision.reason?.rawValue ?? NSNull(),
                "via": iq.id, "state": decision.state.rawValue, "event_id": eventID ?? NSNull(),
                "open_ms": decision.outcome == .unlocked ? Int(decision.openTime ?? 0) * 1000 : 0]
    }

    func controller(forDoor id: String) throws -> DoorController {
        if let c = site.doorController(id) { return c }
        if let c = site.doorController(forLock: id) { return c }
        throw APIError.notFound("door (controller or lock with a controller)", id)
    }

    public func doorSensor(_ id: String, _ body: JSONBody) async throws -> [String: Any] {
        let c = try controller(forDoor: id)
        let open = try body.bool("open", required: true)!
        do { try await c.setDoor(open: open) } catch let e as HardwareError { throw APIError.hardware(e) }
        await settle()
        return await controllersJSON().first { ($0["id"] as? String) == c.id } ?? [:]
    }

    public func doorExit(_ id: String) async throws -> [String: Any] {
        let c = try controller(forDoor: id)
        let decision: Decision
        do { decision = try await c.pressRequestToExit() } catch let e as HardwareError { throw APIError.hardware(e) }
        let eventID = await bridge.eventID(for: decision)
        return ["result": decision.granted ? "granted" : "denied", "reason": decision.reason?.rawValue ?? NSNull(),
                "event_id": eventID ?? NSNull(), "open_ms": Int(decision.openTime ?? 0) * 1000]
    }

    public func controllerPower(_ id: String, _ body: JSONBody) async throws -> [String: Any] {
        guard let c = site.doorController(id) else { throw APIError.notFound("door controller", id) }
        let on = try body.bool("on", required: true)!
        await c.setPower(on)
        await settle()
        return await controllersJSON().first { ($0["id"] as? String) == id } ?? [:]
    }

    public func iqOnline(_ id: String, _ body: JSONBody) async throws -> [String: Any] {
        guard let q = site.iq(id) else { throw APIError.notFound("IQ", id) }
        let online = try body.bool("online", required: true)!
        _ = await q.setOnline(online)
        await settle()
        return await iqsJSON().first { ($0["id"] as? String) == id } ?? [:]
    }

    public func iqPosition(_ id: String, _ body: JSONBody) async throws -> [String: Any] {
        guard site.iq(id) != nil else { throw APIError.notFound("IQ", id) }
        let x = try body.number("x", required: true, range: -100_000...100_000)!
        let y = try body.number("y", required: true, range: -100_000...100_000)!
        let z = try body.number("z", range: -1000...1000) ?? 0
        let range = try body.number("range_m", range: 0.1...100)
        do { try await site.moveIQ(id, to: Position(x: x, y: y, z: z), range: range) } catch let e as HardwareError { throw APIError.hardware(e) }
        await settle()
        return await iqsJSON().first { ($0["id"] as? String) == id } ?? [:]
    }

    public func iqSync(_ id: String) async throws -> [String: Any] {
        guard let q = site.iq(id) else { throw APIError.notFound("IQ", id) }
        let r = await q.syncNow()
        await settle()
        var o: [String: Any] = ["iq": id, "locks_synced": r.locksSynced, "locks_unreachable": r.locksUnreachable,
                                "records_collected": r.recordsCollected]
        if let s = r.skipped { o["skipped"] = s.rawValue }
        return o
    }

    // MARK: - Clock

    public func clockJSON() -> [String: Any] {
        ["mode": options.clock.rawValue, "now": rfc3339(clock.now()), "time_zone": config.timeZone.identifier]
    }

    public func advanceClock(_ body: JSONBody) async throws -> [String: Any] {
        guard let s = simulatedClock else { throw APIError(409, "real_clock", "the clock is real; start serve with --clock simulated") }
        let seconds = try body.number("seconds", required: true, range: 0...Emulator.maxClockStep)!
        try Emulator.requireInWorld(s.now().addingTimeInterval(seconds), field: "seconds")
        await s.advance(by: seconds)
        await settle()
        return clockJSON()
    }

    public func setClock(_ body: JSONBody) async throws -> [String: Any] {
        guard let s = simulatedClock else { throw APIError(409, "real_clock", "the clock is real; start serve with --clock simulated") }
        let t = try body.date("time", required: true)!
        guard abs(t.timeIntervalSince(s.now())) <= Emulator.maxClockStep else {
            // Valid on its own, refused because of where the clock is now: a conflict, not a bad request.
            throw APIError(409, "clock_step_too_large", "at most 31 days from the current simulated time per call", field: "time")
        }
        try Emulator.requireInWorld(t, field: "time")
        await s.set(to: t)
        await settle()
        return clockJSON()
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

    public func eventsJSON(types: [String], lock: String?, since: Date?, after: Int64?, limit: Int, all: Bool) async throws -> [[String: Any]] {
        var set = Set<EventType>()
        for t in types {
            guard let et = EventType(name: t) else { throw APIError.badRequest("type", "unknown event type '\(t)'") }
            set.insert(et)
        }
        await bridge.flush()
        let floor = all ? nil : resetPosition
        let query = EventQuery(types: set, lock: lock, since: since, after: max(after ?? 0, floor ?? 0) == 0 ? nil : max(after ?? 0, floor ?? 0),
                               limit: limit)
        return try await journal.events(query).map(Emulator.eventJSON)
    }

    static func eventJSON(_ e: RecordedEvent) -> [String: Any] {
        var o = (try? JSONSerialization.jsonObject(with: Data(e.cloudEventJSON()))) as? [String: Any] ?? [:]
        o["stage"] = e.stage.rawValue
        o["position"] = Int(e.position)
        return o
    }
}

extension APIError {
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
        case .wrongActivationPIN: return APIError(403, "wrong_activation_pin", "\(e)")
        case .tapFailed: return APIError(500, "tap_failed", "\(e)")
        }
    }
}
