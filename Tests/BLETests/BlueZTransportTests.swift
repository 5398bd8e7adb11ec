import Foundation
import XCTest
@testable import BLE
#if canImport(Glibc)
import Glibc
#endif

/// The BlueZ transport's failure paths, run against this machine's real kernel. On a kernel without
/// Bluetooth (this project's build machines) every entry point must fail with
/// `BlueZError.bluetoothUnavailable` and a one-line message saying what to do; the success paths run
/// in the QEMU guest of `make hil`.
final class BlueZTransportTests: XCTestCase {
    private func requireKernelWithoutBluetooth() throws {
        if BlueZAdapterInfo.kernelSupportsBluetooth {
            throw XCTSkip("this kernel has Bluetooth sockets; the no-Bluetooth path is covered on kernels without it")
        }
    }

    func testAdapterLookupOnAKernelWithoutBluetooth() throws {
        try requireKernelWithoutBluetooth()
        XCTAssertThrowsError(try BlueZAdapterInfo.lookup("hci0")) { error in
            XCTAssertEqual(error as? BlueZError, .bluetoothUnavailable)
        }
        XCTAssertThrowsError(try BlueZAdapterInfo.requireUp("hci3")) { error in
            XCTAssertEqual(error as? BlueZError, .bluetoothUnavailable)
        }
    }

    func testSocketsOnAKernelWithoutBluetooth() async throws {
        try requireKernelWithoutBluetooth()
        let fakeAdapter = BlueZAdapterInfo(name: "hci0", index: 0, address: .any, isUp: true)
        XCTAssertThrowsError(try BlueZL2CAPListener(adapter: fakeAdapter, allowBluetoothd: true)) {
            XCTAssertEqual($0 as? BlueZError, .bluetoothUnavailable)
        }
        XCTAssertThrowsError(try BlueZAdvertiser(adapter: fakeAdapter)) {
            XCTAssertEqual($0 as? BlueZError, .bluetoothUnavailable)
        }
        do {
            _ = try await BlueZL2CAPClient.connect(to: try BlueZAddress("00:AA:01:00:00:00"))
            XCTFail("connect succeeded on a kernel without Bluetooth")
        } catch {
            XCTAssertEqual(error as? BlueZError, .bluetoothUnavailable)
        }
    }

    func testTheNoBluetoothMessageSaysWhatToDo() throws {
        try requireKernelWithoutBluetooth()
        do {
            _ = try BlueZAdapterInfo.lookup("hci0")
            XCTFail("lookup succeeded")
        } catch {
            let text = String(describing: error)
            XCTAssertFalse(text.contains("\n"), "one line: \(text)")
            XCTAssertTrue(text.contains("not available in this kernel"), text)
            XCTAssertTrue(text.contains("modprobe bluetooth"), text)
            XCTAssertTrue(text.contains("--transport loopback"), text)
        }
    }

    func testErrnoClassification() {
        XCTAssertEqual(BlueZError.classify(errno: EAFNOSUPPORT, operation: "x"), .bluetoothUnavailable)
        XCTAssertEqual(BlueZError.classify(errno: EPERM, operation: "sending"), .permissionDenied(operation: "sending", errno: EPERM))
        XCTAssertEqual(BlueZError.classify(errno: EACCES, operation: "b"), .permissionDenied(operation: "b", errno: EACCES))
        XCTAssertEqual(BlueZError.classify(errno: ENODEV, operation: "b", adapter: "hci7"), .noSuchAdapter("hci7"))
        XCTAssertEqual(BlueZError.classify(errno: ENETDOWN, operation: "w", adapter: "hci1"), .adapterDown("hci1"))
        XCTAssertEqual(BlueZError.classify(errno: EADDRINUSE, operation: "bind", adapter: "hci0"),
                       .attChannelInUse(adapter: "hci0", pid: nil))
        XCTAssertEqual(BlueZError.classify(errno: EIO, operation: "read"), .system(operation: "read", errno: EIO))
        let peer = try! BlueZAddress("00:AA:01:00:00:00")
        XCTAssertEqual(BlueZL2CAPClient.mapConnect(EHOSTUNREACH, peer, "hci1"),
                       .connectionFailed(peer: "00:AA:01:00:00:00", errno: EHOSTUNREACH))
        XCTAssertEqual(BlueZL2CAPClient.mapConnect(EPERM, peer, "hci1"),
                       .permissionDenied(operation: "connecting to 00:AA:01:00:00:00", errno: EPERM))
    }

    /// Every failure named in the issue: one line, and the remedy in it.
    func testEachFailureIsOneLineWithARemedy() {
        let cases: [(BlueZError, [String])] = [
            (.bluetoothUnavailable, ["modprobe bluetooth", "make hil"]),
            (.noSuchAdapter("hci7"), ["hci7", "hciconfig -a"]),
            (.adapterDown("hci1"), ["hci1 is down", "power on"]),
            (.permissionDenied(operation: "sending LE Set Advertising Parameters to hci0", errno: EPERM),
             ["EPERM", "setcap cap_net_admin,cap_net_raw+eip"]),
            (.attChannelInUse(adapter: "hci0", pid: 812), ["bluetoothd (pid 812)", "systemctl stop bluetooth"]),
            (.advertisingRejected(command: "LE Set Advertising Enable", status: 0x12),
             ["0x12", "Invalid HCI Command Parameters", "btmon"]),
            (.legacyAdvertisingDisallowed(adapter: "hci0"), ["0x0C", "power off", "extended"]),
            (.hciCommandTimeout(command: "LE Set Advertising Data"), ["did not answer", "btmon"]),
            (.connectionFailed(peer: "00:AA:01:00:00:00", errno: ETIMEDOUT), ["ETIMEDOUT", "advertising"]),
        ]
        var seen = Set<String>()
        for (error, needles) in cases {
            let text = error.description
            XCTAssertFalse(text.contains("\n"), text)
            XCTAssertTrue(seen.insert(text).inserted, "messages must differ: \(text)")
            for needle in needles { XCTAssertTrue(text.contains(needle), "\(needle) missing in: \(text)") }
        }
    }

    func testAdapterNamesAreValidatedBeforeAnySystemCall() {
        for bad in ["", "hci", "wlan0", "hci-1", "hci99999999", "hci0x"] {
            XCTAssertThrowsError(try BlueZAdapterInfo.lookup(bad)) {
                guard case .invalidArgument = $0 as? BlueZError else { return XCTFail("\(bad): \($0)") }
            }
        }
    }

    func testAddressParsingAndKernelByteOrder() throws {
        let a = try BlueZAddress("00:aa:01:02:03:FF", kind: .leRandom)
        XCTAssertEqual(a.description, "00:AA:01:02:03:FF")
        XCTAssertEqual(a.bytes, [0x00, 0xAA, 0x01, 0x02, 0x03, 0xFF])
        let raw = a.bdaddr
        XCTAssertEqual([raw.b.0, raw.b.1, raw.b.2, raw.b.3, raw.b.4, raw.b.5], [0xFF, 0x03, 0x02, 0x01, 0xAA, 0x00])
        XCTAssertEqual(BlueZAddress(bdaddr: raw, kind: .leRandom), a)
        for bad in ["", "00:AA:01:02:03", "00:AA:01:02:03:GG", "00-AA-01-02-03-04", "000:AA:01:02:03:04"] {
            XCTAssertThrowsError(try BlueZAddress(bad), bad)
        }
    }

    func testSocketAddressHasTheCLayout() {
        // struct sockaddr_l2 is 14 bytes in C (bdaddr_t is packed); the kernel copies min(len, 14).
        XCTAssertEqual(BlueZL2CAPAddress.size, 14)
        let sa = BlueZL2CAPAddress.make(try! BlueZAddress("00:AA:01:00:00:00", kind: .leRandom), cid: 4)
        XCTAssertEqual(sa.l2_cid, UInt16(4).littleEndian)
        XCTAssertEqual(sa.l2_bdaddr_type, 2)
        XCTAssertEqual(sa.l2_psm, 0)
    }

    func testSecurityLevelNames() {
        XCTAssertEqual(BlueZSecurityLevel(name: "MEDIUM"), .medium)
        XCTAssertEqual(BlueZSecurityLevel(name: "fips")?.rawValue, 4)
        XCTAssertNil(BlueZSecurityLevel(name: "none"))
    }

    /// bluetoothd detection reads /proc/<pid>/comm; check it on a fabricated proc tree.
    func testBluetoothdDetection() throws {
        let root = FileManagerLite.makeTemporaryDirectory()
        defer { FileManagerLite.remove(root) }
        FileManagerLite.write("\(root)/1/comm", "systemd\n")
        FileManagerLite.write("\(root)/self/comm", "bluetoothd\n")      // not a pid: ignored
        FileManagerLite.write("\(root)/4242/comm", "bluetoothd-x\n")    // another name
        XCTAssertNil(BlueZDaemonCheck.runningBluetoothd(procRoot: root))
        FileManagerLite.write("\(root)/812/comm", "bluetoothd\n")
        XCTAssertEqual(BlueZDaemonCheck.runningBluetoothd(procRoot: root), 812)
        XCTAssertNil(BlueZDaemonCheck.runningBluetoothd(procRoot: "\(root)/missing"))
    }

    func testListenerRefusesToStartBesideBluetoothd() throws {
        // A real process named bluetoothd (a copy of sleep(1)) makes the listener refuse, before any
        // socket is opened — so this holds on a kernel without Bluetooth too.
        let dir = FileManagerLite.makeTemporaryDirectory()
        defer { FileManagerLite.remove(dir) }
        let fake = "\(dir)/bluetoothd"
        XCTAssertEqual(system("cp /bin/sleep \(fake)"), 0)
        var pid: pid_t = 0
        let args = [fake, "30"]
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        XCTAssertEqual(posix_spawn(&pid, fake, nil, nil, &argv, environ), 0)
        defer { kill(pid, SIGKILL); var s: Int32 = 0; waitpid(pid, &s, 0) }
        // posix_spawn returns after exec, so /proc/<pid>/comm should already name the new image; a CI
        // run once saw the listener miss it, so wait (bounded) until the kernel shows the name.
        var comm = ""
        for _ in 0..<200 {
            comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? ""
            if comm == "bluetoothd\n" { break }
            usleep(10_000)
        }
        XCTAssertEqual(comm, "bluetoothd\n", "the fake daemon never showed up under its name")
        let adapter = BlueZAdapterInfo(name: "hci0", index: 0, address: .any, isUp: true)
        XCTAssertThrowsError(try BlueZL2CAPListener(adapter: adapter)) { error in
            guard case .attChannelInUse(let name, let found)? = error as? BlueZError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(name, "hci0")
            XCTAssertNotNil(found)
            XCTAssertTrue(String(describing: error).contains("systemctl stop bluetooth"))
        }
    }
}

/// The few file operations the tests need, on Glibc (the BLE module links no Foundation).
enum FileManagerLite {
    static func makeTemporaryDirectory() -> String {
        var template = Array("/tmp/keyway-bluez-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    static func write(_ path: String, _ text: String) {
        let dir = String(path[..<path.lastIndex(of: "/")!])
        mkdir(dir, 0o755)
        let f = fopen(path, "w")!
        fputs(text, f)
        fclose(f)
    }

    static func remove(_ path: String) { _ = system("rm -rf '\(path)'") }
}
