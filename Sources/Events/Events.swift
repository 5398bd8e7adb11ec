// Events — the event model, the durable SQLite journal and upstream delivery.
//
// Producers (the hardware layer) build `KeywayEvent`s and call `EventJournal.record`; IQs call
// `EventJournal.markCollected`; `WebhookDelivery` sends collected events upstream as signed CloudEvents.
// This module imports no other Keyway module: higher layers call into it. See docs/EVENTS.md.
