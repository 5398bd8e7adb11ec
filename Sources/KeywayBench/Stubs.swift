// Sections filled as their modules land.
func benchTap(_ report: BenchReport) async throws { throw BenchError("tap bench not built yet") }
func benchJournal(_ report: BenchReport) async throws { throw BenchError("journal bench not built yet") }
func benchSite(_ report: BenchReport) async throws { throw BenchError("site bench not built yet") }
func benchAPI(_ report: BenchReport) async throws { throw BenchError("api bench not built yet") }
