import Events
import Foundation
import KeywayAPI
import MobileKey
import OpenAPIRuntime

/// The document's operations (the generated `APIProtocol`), each answered by one emulator operation
/// (Core/Operations.swift). Refusals are thrown as APIError and rendered once, by ControlAPI's error
/// middleware, in the document's error shape.
struct ControlAPIHandler: APIProtocol {
    let emu: Emulator
    let session: LiveViewSession?

    typealias Schemas = Components.Schemas

    // MARK: - Service

    func getHealth(_ input: Operations.GetHealth.Input) async throws -> Operations.GetHealth.Output {
        .ok(.init(body: .json(try await emu.health())))
    }

    func getOpenAPIDocument(_ input: Operations.GetOpenAPIDocument.Input) async throws -> Operations.GetOpenAPIDocument.Output {
        .ok(.init(body: .yaml(HTTPBody([UInt8](try OpenAPIDocumentFile.bytes())))))
    }

    func getLiveView(_ input: Operations.GetLiveView.Input) async throws -> Operations.GetLiveView.Output {
        .ok(.init(body: .html(HTTPBody(LiveView.html))))
    }

    func getLiveViewAlias(_ input: Operations.GetLiveViewAlias.Input) async throws -> Operations.GetLiveViewAlias.Output {
        .ok(.init(body: .html(HTTPBody(LiveView.html))))
    }

    /// The live view's login: the token in a JSON body, answered with an HttpOnly, SameSite=Strict
    /// session cookie (RequestGuard.swift, LiveViewSession), so the token never sits in a URL.
    func login(_ input: Operations.Login.Input) async throws -> Operations.Login.Output {
        let body = switch input.body { case .json(let b): b }
        let presented = try Input.text(body.token, "token", maxLength: 4096)
        guard let token = emu.options.apiToken, let session else {
            return .ok(.init(body: .json(.init(tokenRequired: false))))
        }
        guard constantTimeEquals(presented, token) else { throw APIError(401, "unauthorized", "wrong token", field: "token") }
        return .ok(.init(headers: .init(setCookie: session.cookie().description), body: .json(.init(tokenRequired: true))))
    }

    // MARK: - Site and devices

    func getSite(_ input: Operations.GetSite.Input) async throws -> Operations.GetSite.Output {
        .ok(.init(body: .json(try emu.siteDescription())))
    }

    func listLocks(_ input: Operations.ListLocks.Input) async throws -> Operations.ListLocks.Output {
        .ok(.init(body: .json(try await emu.locks())))
    }

    func getLock(_ input: Operations.GetLock.Input) async throws -> Operations.GetLock.Output {
        .ok(.init(body: .json(try await emu.lock(id: try pathID(input.path.id)))))
    }

    func updateLock(_ input: Operations.UpdateLock.Input) async throws -> Operations.UpdateLock.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.updateLock(try pathID(input.path.id), body))))
    }

    func remoteOpen(_ input: Operations.RemoteOpen.Input) async throws -> Operations.RemoteOpen.Output {
        let body: Schemas.RemoteOpenRequest
        switch input.body {
        case .json(let b)?: body = b
        case nil: body = .init()
        }
        return .ok(.init(body: .json(try await emu.remoteOpen(try pathID(input.path.id), body))))
    }

    func setLockCertificate(_ input: Operations.SetLockCertificate.Input) async throws -> Operations.SetLockCertificate.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.setLockCertificate(try pathID(input.path.id), body))))
    }

    func revokeLockCertificate(_ input: Operations.RevokeLockCertificate.Input) async throws -> Operations.RevokeLockCertificate.Output {
        let id = try pathID(input.path.id)
        let version = try await emu.revokeLockCertificate(id)
        guard let certificate = emu.keys.locks[id]?.certificate else { throw APIError.notFound("lock", id) }
        return .ok(.init(body: .json(.init(lock: id, certificateId: Hex.encode(certificate.id), revoked: true,
                                           revocationListVersion: Int(version)))))
    }

    func getRevocationList(_ input: Operations.GetRevocationList.Input) async throws -> Operations.GetRevocationList.Output {
        .ok(.init(body: .json(await emu.revocationListDocument())))
    }

    func listIQs(_ input: Operations.ListIQs.Input) async throws -> Operations.ListIQs.Output {
        .ok(.init(body: .json(await emu.iqs())))
    }

    func setIQOnline(_ input: Operations.SetIQOnline.Input) async throws -> Operations.SetIQOnline.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.iqOnline(try pathID(input.path.id), body))))
    }

    func moveIQ(_ input: Operations.MoveIQ.Input) async throws -> Operations.MoveIQ.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.iqPosition(try pathID(input.path.id), body))))
    }

    func activateIQ(_ input: Operations.ActivateIQ.Input) async throws -> Operations.ActivateIQ.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.activateIQ(try pathID(input.path.id), body))))
    }

    func deactivateIQ(_ input: Operations.DeactivateIQ.Input) async throws -> Operations.DeactivateIQ.Output {
        .ok(.init(body: .json(try await emu.deactivateIQ(try pathID(input.path.id), user: input.query.user))))
    }

    func syncIQ(_ input: Operations.SyncIQ.Input) async throws -> Operations.SyncIQ.Output {
        .ok(.init(body: .json(try await emu.iqSync(try pathID(input.path.id)))))
    }

    func listControllers(_ input: Operations.ListControllers.Input) async throws -> Operations.ListControllers.Output {
        .ok(.init(body: .json(try await emu.controllers())))
    }

    func setControllerPower(_ input: Operations.SetControllerPower.Input) async throws -> Operations.SetControllerPower.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.controllerPower(try pathID(input.path.id), body))))
    }

    func setDoorSensor(_ input: Operations.SetDoorSensor.Input) async throws -> Operations.SetDoorSensor.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.doorSensor(try pathID(input.path.id), body))))
    }

    func pressExit(_ input: Operations.PressExit.Input) async throws -> Operations.PressExit.Output {
        .ok(.init(body: .json(try await emu.doorExit(try pathID(input.path.id)))))
    }

    // MARK: - Keys and taps

    func listKeys(_ input: Operations.ListKeys.Input) async throws -> Operations.ListKeys.Output {
        .ok(.init(body: .json(try emu.listKeys(user: input.query.user))))
    }

    func issueKey(_ input: Operations.IssueKey.Input) async throws -> Operations.IssueKey.Output {
        let body = switch input.body { case .json(let b): b }
        return .created(.init(body: .json(try await emu.issueKey(body))))
    }

    func revokeKey(_ input: Operations.RevokeKey.Input) async throws -> Operations.RevokeKey.Output {
        .ok(.init(body: .json(try await emu.revokeKey(try pathID(input.path.id)))))
    }

    func tap(_ input: Operations.Tap.Input) async throws -> Operations.Tap.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.tap(body))))
    }

    // MARK: - Directory

    func listUsers(_ input: Operations.ListUsers.Input) async throws -> Operations.ListUsers.Output {
        .ok(.init(body: .json(await emu.users())))
    }

    func createUser(_ input: Operations.CreateUser.Input) async throws -> Operations.CreateUser.Output {
        let body = switch input.body { case .json(let b): b }
        return .created(.init(body: .json(try await emu.createUser(body))))
    }

    func getUser(_ input: Operations.GetUser.Input) async throws -> Operations.GetUser.Output {
        .ok(.init(body: .json(try await emu.user(id: try pathID(input.path.id)))))
    }

    func updateUser(_ input: Operations.UpdateUser.Input) async throws -> Operations.UpdateUser.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.updateUser(try pathID(input.path.id), body))))
    }

    func deleteUser(_ input: Operations.DeleteUser.Input) async throws -> Operations.DeleteUser.Output {
        .ok(.init(body: .json(try await emu.deleteUser(try pathID(input.path.id)))))
    }

    func setUserTags(_ input: Operations.SetUserTags.Input) async throws -> Operations.SetUserTags.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.setUserTags(try pathID(input.path.id), body))))
    }

    func setUserPIN(_ input: Operations.SetUserPIN.Input) async throws -> Operations.SetUserPIN.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.setUserPIN(try pathID(input.path.id), body))))
    }

    func clearUserPIN(_ input: Operations.ClearUserPIN.Input) async throws -> Operations.ClearUserPIN.Output {
        .ok(.init(body: .json(try await emu.clearUserPIN(try pathID(input.path.id)))))
    }

    func listGroups(_ input: Operations.ListGroups.Input) async throws -> Operations.ListGroups.Output {
        .ok(.init(body: .json(await emu.groups())))
    }

    func createGroup(_ input: Operations.CreateGroup.Input) async throws -> Operations.CreateGroup.Output {
        let body = switch input.body { case .json(let b): b }
        return .created(.init(body: .json(try await emu.createGroup(body))))
    }

    func getGroup(_ input: Operations.GetGroup.Input) async throws -> Operations.GetGroup.Output {
        .ok(.init(body: .json(try await emu.group(id: try pathID(input.path.id)))))
    }

    func updateGroup(_ input: Operations.UpdateGroup.Input) async throws -> Operations.UpdateGroup.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.updateGroup(try pathID(input.path.id), body))))
    }

    func listMemberships(_ input: Operations.ListMemberships.Input) async throws -> Operations.ListMemberships.Output {
        .ok(.init(body: .json(try await emu.memberships(group: try pathID(input.path.id)))))
    }

    func createMembership(_ input: Operations.CreateMembership.Input) async throws -> Operations.CreateMembership.Output {
        let body = switch input.body { case .json(let b): b }
        return .created(.init(body: .json(try await emu.createMembership(group: try pathID(input.path.id), body))))
    }

    func getMembership(_ input: Operations.GetMembership.Input) async throws -> Operations.GetMembership.Output {
        .ok(.init(body: .json(try await emu.membership(group: try pathID(input.path.id), id: try pathID(input.path.membership)))))
    }

    func deleteMembership(_ input: Operations.DeleteMembership.Input) async throws -> Operations.DeleteMembership.Output {
        .ok(.init(body: .json(try await emu.deleteMembership(group: try pathID(input.path.id), id: try pathID(input.path.membership)))))
    }

    func getLockdown(_ input: Operations.GetLockdown.Input) async throws -> Operations.GetLockdown.Output {
        .ok(.init(body: .json(await emu.lockdownState(changed: []))))
    }

    func setLockdown(_ input: Operations.SetLockdown.Input) async throws -> Operations.SetLockdown.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.setLockdown(body))))
    }

    // MARK: - Clock

    func getClock(_ input: Operations.GetClock.Input) async throws -> Operations.GetClock.Output {
        .ok(.init(body: .json(try emu.clockDescription())))
    }

    func advanceClock(_ input: Operations.AdvanceClock.Input) async throws -> Operations.AdvanceClock.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.advanceClock(body))))
    }

    func setClock(_ input: Operations.SetClock.Input) async throws -> Operations.SetClock.Output {
        let body = switch input.body { case .json(let b): b }
        return .ok(.init(body: .json(try await emu.setClock(body))))
    }

    // MARK: - Events

    func listEvents(_ input: Operations.ListEvents.Input) async throws -> Operations.ListEvents.Output {
        let q = input.query
        let limit = try Input.integer(q.limit, "limit", 1...10_000) ?? 100
        let after = try Input.integer(q.after, "after", 0...Int.max).map(Int64.init)
        let types = (q._type ?? []).flatMap { $0.split(separator: ",").map(String.init) }
        let events = try await emu.events(types: types, lock: q.lock, since: try Input.date(q.since, "since"), after: after, limit: limit, all: q.all == "true")
        return .ok(.init(body: .json(events)))
    }

    /// Server-Sent Events: a comment line, then one message per journaled event, until the client goes.
    func streamEvents(_ input: Operations.StreamEvents.Input) async throws -> Operations.StreamEvents.Output {
        let after = try Input.integer(input.query.after, "after", 0...Int.max).map(Int64.init) ?? emu.resetPosition
        let journal = emu.journal
        let messages = AsyncThrowingStream<ArraySlice<UInt8>, any Error> { continuation in
            let task = Task {
                continuation.yield(ArraySlice(": keyway event stream\n\n".utf8))
                do {
                    for try await e in journal.follow(EventQuery(after: after == 0 ? nil : after)) {
                        let data = String(decoding: e.cloudEventJSON(), as: UTF8.self)
                        continuation.yield(ArraySlice("id: \(e.position)\nevent: \(e.type.rawValue)\ndata: \(data)\n\n".utf8))
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
        return .ok(.init(body: .textEventStream(HTTPBody(messages, length: .unknown, iterationBehavior: .single))))
    }

    func listDeliveries(_ input: Operations.ListDeliveries.Input) async throws -> Operations.ListDeliveries.Output {
        let status = await emu.deliveryStatus.map {
            Schemas.Delivery(id: $0.name, endpoint: $0.description, delivered: Int($0.delivered), pending: Int($0.pending),
                             deadLettered: Int($0.deadLettered))
        }
        return .ok(.init(body: .json(status)))
    }

    func reset(_ input: Operations.Reset.Input) async throws -> Operations.Reset.Output {
        let position = try await emu.reset()
        return .ok(.init(body: .json(.init(reset: true, eventsAfter: Int(position)))))
    }

    // MARK: - Snapshots

    func listSnapshots(_ input: Operations.ListSnapshots.Input) async throws -> Operations.ListSnapshots.Output {
        .ok(.init(body: .json(try emu.listSnapshots())))
    }

    func createSnapshot(_ input: Operations.CreateSnapshot.Input) async throws -> Operations.CreateSnapshot.Output {
        let body: Schemas.SnapshotRequest
        switch input.body {
        case .json(let b)?: body = b
        case nil: body = .init()
        }
        return .created(.init(body: .json(try await emu.createSnapshot(body))))
    }

    func getSnapshot(_ input: Operations.GetSnapshot.Input) async throws -> Operations.GetSnapshot.Output {
        .ok(.init(body: .json(try emu.snapshot(id: try pathID(input.path.id)))))
    }

    func deleteSnapshot(_ input: Operations.DeleteSnapshot.Input) async throws -> Operations.DeleteSnapshot.Output {
        .ok(.init(body: .json(try emu.deleteSnapshot(id: try pathID(input.path.id)))))
    }

    func restoreSnapshot(_ input: Operations.RestoreSnapshot.Input) async throws -> Operations.RestoreSnapshot.Output {
        .ok(.init(body: .json(try await emu.restoreSnapshot(id: try pathID(input.path.id)))))
    }

    /// A path's `{id}`: the generated server has percent-decoded it; the document bounds its length.
    func pathID(_ id: String) throws -> String {
        guard !id.isEmpty, id.utf8.count <= 128 else { throw APIError.badRequest("id", "missing or too long") }
        return id
    }
}
