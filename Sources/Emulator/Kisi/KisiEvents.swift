import Events
import Foundation
import Hardware
import KeywayCrypto
import KisiAPI

/// Journal events in Kisi's event shape, for GET /events and Kisi-shaped webhooks. Kisi reports door
/// access as `lock.unlock` (success or not, with the refusal as `error_code`); Keyway's lockdown reaching
/// a lock is `lock.lock_down` / `lock.cancel_lockdown` (the names of the API's own actions: Kisi's
/// public documentation names no event for them; docs/KISI.md). Other journal events have no Kisi
/// counterpart and are left out.
enum KisiEvents {
    static let journalTypes: Set<EventType> = [.accessGranted, .accessDenied, .lockdownStarted, .lockdownEnded]

    /// The newest `limit` of them, newest first, since the last reset (as GET /v1/events).
    static func recent(_ emu: Emulator, limit: Int) async throws -> [KisiSchemas.Event] {
        await emu.bridge.flush()
        let floor = emu.resetPosition
        let recorded = try await emu.journal.events(EventQuery(types: journalTypes, after: floor == 0 ? nil : floor, limit: limit, newestFirst: true))
        let names = await userNames(emu)
        return recorded.compactMap { event($0, emu: emu, userNames: names) }
    }

    static func userNames(_ emu: Emulator) async -> [String: String] {
        Dictionary(await emu.site.directory.currentUsers.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
    }

    static func event(_ r: RecordedEvent, emu: Emulator, userNames: [String: String]) -> KisiSchemas.Event? {
        let e = r.event
        guard journalTypes.contains(e.type), e.source.kind == .lock else { return nil }
        let lockID = e.source.id
        let lockName = emu.config.lockIndex[lockID].map { emu.config.locks[$0].name } ?? lockID
        let actorName = e.user.map { userNames[$0] ?? $0 }
        let type: String, success: Bool, message: String
        switch e.type {
        case .accessGranted:
            type = "lock.unlock"; success = true
            message = "\(actorName ?? "The platform") unlocked \(lockName)\(e.method.map { " (\($0.rawValue))" } ?? "")"
        case .accessDenied:
            type = "lock.unlock"; success = false
            message = "\(actorName ?? "The platform") could not unlock \(lockName): \(e.reason ?? "denied")"
        case .lockdownStarted:
            type = "lock.lock_down"; success = true; message = "\(lockName) was locked down"
        default:
            type = "lock.cancel_lockdown"; success = true; message = "\(lockName)'s lockdown was lifted"
        }
        return .init(id: r.position, uuid: r.id, _type: type, success: success,
                     actorType: e.user == nil ? nil : "User", actorId: e.user.map { KisiIdentity.id(.user, $0) }, actorName: actorName,
                     objectType: "Lock", objectId: KisiIdentity.id(.lock, lockID), objectName: lockName,
                     organizationId: KisiIdentity.id(.organization, emu.config.organisation), placeId: KisiIdentity.id(.place, emu.config.siteID),
                     errorCode: success ? nil : (e.reason ?? "denied"), errorMessage: success ? nil : message,
                     message: message, createdAt: rfc3339(e.time))
    }

    /// Webhook bodies in Kisi's event shape (one event object per request), signed as Kisi's event
    /// webhooks are: `X-Signature`, the HMAC-SHA256 of the body under the signature key. Kisi's
    /// documentation leaves the digest's spelling open; Keyway sends lowercase hex and takes the key's
    /// UTF-8 bytes as given (docs/KISI.md).
    static func webhookEncoding(_ emu: Emulator, signatureKey: String) -> WebhookEncoding {
        let key = Array(signatureKey.utf8)
        return WebhookEncoding(
            contentType: "application/json",
            body: { [weak emu] recorded, _ in
                guard let emu, journalTypes.contains(recorded.type) else { return nil }
                guard let e = event(recorded, emu: emu, userNames: await userNames(emu)) else { return nil }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                return (try? encoder.encode(e)).map(Array.init)
            },
            signature: { body in
                // An HMAC over in-memory bytes fails only if OpenSSL does: the request then goes unsigned and
                // the receiver refuses it (a 4xx: dead-lettered, never silently accepted).
                [("X-Signature", ((try? HMACSHA256.authenticate(body, key: key)) ?? []).map { String(format: "%02x", $0) }.joined())]
            })
    }
}
