import BLE  // SplitMix64: deterministic, so a failing fuzz input can be reproduced
import XCTest
@testable import MobileKey

final class CBORTests: XCTestCase {
    private func hex(_ item: CBOR) -> String { Hex.encode(item.encoded()) }
    private func decode(_ hex: String, _ limits: CBORDecoder.Limits = .default) throws -> CBOR {
        try CBORDecoder(limits: limits).decode(Hex.decode(hex)!)
    }
    private func assertError(_ hex: String, _ expected: CBORError, limits: CBORDecoder.Limits = .default,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decode(hex, limits), file: file, line: line) { error in
            XCTAssertEqual(error as? CBORError, expected, file: file, line: line)
        }
    }

    // MARK: Encoding (RFC 8949 Appendix A examples, deterministic form)

    func testIntegersUseShortestHeads() {
        XCTAssertEqual(hex(.int(0)), "00")
        XCTAssertEqual(hex(.int(23)), "17")
        XCTAssertEqual(hex(.int(24)), "1818")
        XCTAssertEqual(hex(.int(100)), "1864")
        XCTAssertEqual(hex(.int(1000)), "1903e8")
        XCTAssertEqual(hex(.int(1_000_000)), "1a000f4240")
        XCTAssertEqual(hex(.int(1_000_000_000_000)), "1b000000e8d4a51000")
        XCTAssertEqual(hex(.unsigned(UInt64.max)), "1bffffffffffffffff")
        XCTAssertEqual(hex(.int(-1)), "20")
        XCTAssertEqual(hex(.int(-10)), "29")
        XCTAssertEqual(hex(.int(-100)), "3863")
        XCTAssertEqual(hex(.int(-1000)), "3903e7")
        XCTAssertEqual(hex(.int(-65537)), "3a00010000")
        XCTAssertEqual(hex(.negative(UInt64.max)), "3bffffffffffffffff")
        XCTAssertEqual(hex(.int(Int64.min)), "3b7fffffffffffffff")
    }

    func testIntAccessorsRoundTrip() {
        for v: Int64 in [0, 1, 23, 24, 255, 256, 65535, 65536, -1, -24, -25, -65537, Int64.max, Int64.min] {
            XCTAssertEqual(CBOR.int(v).intValue, v)
            XCTAssertEqual(try decode(hex(.int(v))).intValue, v)
        }
        XCTAssertNil(CBOR.unsigned(UInt64(Int64.max) + 1).intValue)
        XCTAssertNil(CBOR.negative(UInt64(Int64.max) + 1).intValue)
        XCTAssertNil(CBOR.text("1").intValue)
    }

    func testStringsArraysTagsSimple() {
        XCTAssertEqual(hex(.bytes([])), "40")
        XCTAssertEqual(hex(.bytes([1, 2, 3, 4])), "4401020304")
        XCTAssertEqual(hex(.text("")), "60")
        XCTAssertEqual(hex(.text("IETF")), "6449455446")
        XCTAssertEqual(hex(.text("\u{00fc}")), "62c3bc")
        XCTAssertEqual(hex(.text("\u{6c34}")), "63e6b0b4")
        XCTAssertEqual(hex([1, [2, 3], [4, 5]]), "8301820203820405")
        XCTAssertEqual(hex(.array((1...25).map { CBOR.int($0) })), "98190102030405060708090a0b0c0d0e0f101112131415161718181819")
        XCTAssertEqual(hex(.tagged(1, .int(1_363_896_240))), "c11a514b67b0")
        XCTAssertEqual(hex(.bool(false)), "f4")
        XCTAssertEqual(hex(.bool(true)), "f5")
        XCTAssertEqual(hex(.null), "f6")
        XCTAssertEqual(hex(.undefined), "f7")
        XCTAssertEqual(hex(.bytes([UInt8](repeating: 7, count: 300))).prefix(6), "59012c")
    }

    func testMapKeysSortedByEncodedBytes() {
        // RFC 8949 §4.2.1: 10, 100, -1, "z", "aa", [100], [-1], false.
        let m: CBOR = .map([
            .bool(false): 8, .array([.int(-1)]): 7, .array([.int(100)]): 6, "aa": 5, "z": 4, .int(-1): 3, .int(100): 2, .int(10): 1,
        ])
        XCTAssertEqual(hex(m), "a80a011864022003617a046261610581186406812007f408")
        // Claim keys as in a credential: positive first, then the private negative keys.
        let claims: CBOR = [.int(-65539): "k", .int(8): 0, .int(1): "s", .int(-65537): 1]
        XCTAssertEqual(hex(claims), "a4" + "0161" + "73" + "0800" + "3a00010000" + "01" + "3a00010002" + "616b")
    }

    func testEncodingIsIndependentOfInsertionOrder() {
        var a: [CBOR: CBOR] = [:], b: [CBOR: CBOR] = [:]
        let keys: [CBOR] = (0..<40).map { .int(Int64($0 * 37 % 41) - 20) } + ["x", "yy", .bytes([1])]
        for (i, k) in keys.enumerated() { a[k] = .int(Int64(i)) }
        for (i, k) in keys.enumerated().reversed() { b[k] = .int(Int64(i)) }
        XCTAssertEqual(CBOR.map(a).encoded(), CBOR.map(b).encoded())
    }

    func testRoundTripNested() throws {
        let item: CBOR = [
            1: "site", 2: [.bytes([0, 255]), .null, .undefined, true, .tagged(18, ["x", -5])],
            "k": [.int(-65537): [["Europe/Berlin"]]], .int(-1): .unsigned(UInt64.max), .int(-2): .negative(UInt64.max),
        ]
        let bytes = item.encoded()
        XCTAssertEqual(try CBORDecoder().decode(bytes), item)
        XCTAssertEqual(try CBORDecoder().decode(bytes).encoded(), bytes)
    }

    func testAccessorsAndSubscripts() throws {
        let item: CBOR = [1: "a", "kk": .bytes([1, 2, 3]), .int(-3): [true]]
        XCTAssertEqual(item[1]?.textValue, "a")
        XCTAssertEqual(item["kk"]?.bytesValue, [1, 2, 3])
        XCTAssertEqual(item[-3]?.arrayValue?.first?.boolValue, true)
        XCTAssertNil(item[2])
        XCTAssertNil(CBOR.int(1)[1])
        XCTAssertEqual(item.mapValue?.count, 3)
        XCTAssertEqual(CBOR.tagged(61, 1).taggedValue?.tag, 61)
    }

    // MARK: Strict decoding

    func testTruncationAtEveryPrefixIsReported() throws {
        let issued = try MKTest.issue()
        let bytes = issued.bytes
        for n in 0..<bytes.count {
            XCTAssertThrowsError(try CBORDecoder().decode(Array(bytes.prefix(n)))) { error in
                guard case .truncated = error as? CBORError else { return XCTFail("prefix \(n): \(error)") }
            }
        }
        XCTAssertNoThrow(try CBORDecoder().decode(bytes))
        assertError("", .truncated(at: 0))
        assertError("1a0001", .truncated(at: 0))
        assertError("8201", .truncated(at: 0))
        assertError("82016361", .truncated(at: 2))
    }

    func testTrailingBytes() {
        assertError("0000", .trailingBytes(at: 1))
        assertError("8101ff", .trailingBytes(at: 2))
    }

    func testDuplicateMapKeys() {
        assertError("a2010201 03", .duplicateMapKey(at: 3))
        assertError("a2616102616103", .duplicateMapKey(at: 4))
        // Different encodings of the same key can't happen (non-canonical heads are refused
        // first), but the same key nested deeper is still caught.
        assertError("a101a2000100 02", .duplicateMapKey(at: 5))
    }

    func testDeepNestingIsRefusedWithoutRecursingFurther() {
        // 16 nested arrays are fine, 17 are not; 100 000 are refused at the 17th, cheaply.
        XCTAssertNoThrow(try decode(String(repeating: "81", count: 15) + "80"))
        assertError(String(repeating: "81", count: 16) + "80", .depthExceeded(at: 16, limit: 16))
        let deep = [UInt8](repeating: 0x81, count: 100_000) + [0x80]
        XCTAssertThrowsError(try CBORDecoder(limits: .init(maxBytes: 200_000)).decode(deep)) {
            XCTAssertEqual($0 as? CBORError, .depthExceeded(at: 16, limit: 16))
        }
        assertError(String(repeating: "a101", count: 17) + "00", .depthExceeded(at: 32, limit: 16))
        assertError(String(repeating: "c1", count: 17) + "00", .depthExceeded(at: 16, limit: 16))
    }

    func testHugeDeclaredLengthsAreRefusedBeforeAllocation() {
        // Declared sizes far beyond memory: must fail on the head alone.
        assertError("5bffffffffffffffff", .lengthExceeded(at: 0, declared: UInt64.max, limit: 4096))
        assertError("7b7fffffffffffffff00", .lengthExceeded(at: 0, declared: UInt64(Int64.max), limit: 4096))
        assertError("9bffffffffffffffff", .lengthExceeded(at: 0, declared: UInt64.max, limit: 256))
        assertError("bb0000000100000000", .lengthExceeded(at: 0, declared: 1 << 32, limit: 256))
        assertError("5a00010000", .lengthExceeded(at: 0, declared: 65536, limit: 4096))
        // Within the limits but more than the input holds: truncated, still without allocating.
        assertError("590fff00", .truncated(at: 0))
        assertError("98ff00", .truncated(at: 0))
        assertError("b88000", .truncated(at: 0))
        // The per-container item limit.
        let limits = CBORDecoder.Limits(maxItems: 3)
        assertError("8401020304", .lengthExceeded(at: 0, declared: 4, limit: 3), limits: limits)
        XCTAssertNoThrow(try decode("83010203", limits))
    }

    func testTotalSizeLimit() {
        let big = [UInt8](repeating: 0, count: 16385)
        XCTAssertThrowsError(try CBORDecoder().decode(big)) {
            XCTAssertEqual($0 as? CBORError, .tooLarge(size: 16385, limit: 16384))
        }
    }

    func testIndefiniteLengthsRefused() {
        assertError("5f42010243030405ff", .indefiniteLength(at: 0))
        assertError("7f657374726561646d696e67ff", .indefiniteLength(at: 0))
        assertError("9f018202039f0405ffff", .indefiniteLength(at: 0))
        assertError("bf61610161629f0203ffff", .indefiniteLength(at: 0))
        assertError("82019f", .indefiniteLength(at: 2))
    }

    func testNonCanonicalHeadsRefused() {
        assertError("1805", .nonCanonical(at: 0))          // 5 in two bytes
        assertError("190017", .nonCanonical(at: 0))        // 23 in three
        assertError("1a000000ff", .nonCanonical(at: 0))
        assertError("1b00000000ffffffff", .nonCanonical(at: 0))
        assertError("3817", .nonCanonical(at: 0))          // -24 long form
        assertError("5801ff", .nonCanonical(at: 0))        // bstr length 1 in long form
        assertError("820119000a", .nonCanonical(at: 2))
        assertError("d81200", .nonCanonical(at: 0))        // tag 18 long form
        assertError("f814", .nonCanonical(at: 0))          // false as a two-byte simple value
    }

    func testFloatsSimpleValuesAndReservedInfo() {
        assertError("f93c00", .unsupportedFloat(at: 0))
        assertError("fa47c35000", .unsupportedFloat(at: 0))
        assertError("fb3ff199999999999a", .unsupportedFloat(at: 0))
        assertError("f0", .unsupportedSimpleValue(at: 0, value: 16))
        assertError("f8ff", .unsupportedSimpleValue(at: 0, value: 255))
        assertError("1c", .reservedAdditionalInfo(at: 0))
        assertError("5d", .reservedAdditionalInfo(at: 0))
        assertError("ff", .reservedAdditionalInfo(at: 0))  // stray break
        assertError("1f", .reservedAdditionalInfo(at: 0))  // no indefinite integers
        assertError("df00", .reservedAdditionalInfo(at: 0))
    }

    func testInvalidUTF8Refused() {
        assertError("62c328", .invalidUTF8(at: 0))       // bad continuation
        assertError("63eda080", .invalidUTF8(at: 0))     // UTF-16 surrogate
        assertError("62c0af", .invalidUTF8(at: 0))       // overlong "/"
        assertError("8261616180", .invalidUTF8(at: 3))
    }

    /// Random and mutated inputs: the decoder must return or throw, never trap, and anything it
    /// accepts must survive a re-encode/decode round trip unchanged.
    func testFuzzNeverCrashes() throws {
        var rng = SplitMix64(seed: 0x6b65_7977_6179)
        let seed = try MKTest.issue().bytes
        var accepted = 0
        for i in 0..<30_000 {
            var input: [UInt8]
            if i % 2 == 0 {
                input = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                input = seed
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let at = Int(rng.next() % UInt64(input.count))
                    input[at] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            if let item = try? CBORDecoder().decode(input) {
                accepted += 1
                let again = item.encoded()
                XCTAssertEqual(try CBORDecoder().decode(again), item)
            }
        }
        XCTAssertGreaterThan(accepted, 0)
    }

    func testDiagnosticNotation() {
        let item: CBOR = [1: .bytes([0xab]), "t": [.int(-2), .null]]
        XCTAssertEqual(item.description, "{1: h'ab', \"t\": [-2, null]}")
    }

    func testHex() {
        XCTAssertEqual(Hex.encode([0, 0x7f, 0xff]), "007fff")
        XCTAssertEqual(Hex.decode("00 7F\nff"), [0, 0x7f, 0xff])
        XCTAssertNil(Hex.decode("abc"))
        XCTAssertNil(Hex.decode("zz"))
    }
}

