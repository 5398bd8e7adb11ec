#!/usr/bin/env python3
"""Google's Bumble as an independent GATT central against a Keyway lock on the kernel stack (HIL guest).

A Bumble controller attached to /dev/vhci becomes a kernel adapter (hciN); the Keyway lock command runs
on that adapter through the kernel's HCI and L2CAP sockets. A second Bumble controller on the same
in-process LocalLink carries a Bumble host acting as the phone: it connects, exchanges the MTU,
discovers the lock service, reads what is readable and subscribes to what notifies or indicates.

    bumble_central.py --service UUID --lock-command 'keyway-hil-peer lock --adapter {adapter} …'

Prints `ok <check> …` / `FAIL <check>: why` lines and exits 1 on the first failure.

Workaround (Bumble 0.0.236): LocalLink labels LE data with the *sender's random address* even on a
public-address connection, and the receiving controller drops data from an address it has no
connection with ("no connection for …"). Both controllers therefore get a random address equal to
their public one, and the central connects with its public address.
"""
import argparse
import asyncio
import os
import shlex
import sys
import time

from bumble.controller import Controller
from bumble.device import Device, Peer
from bumble.hci import Address, OwnAddressType
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink
from bumble.transport.vhci import open_vhci_transport
from bumble.core import UUID

LOCK_RADIO = 'F0:4B:57:00:00:01'   # static-random-shaped (top bits 11), also used as public
PHONE_RADIO = 'F0:4B:57:00:00:02'


class Failure(Exception):
    pass


def ok(check: str, detail: str = '') -> None:
    print(f'ok {check}' + (f' ({detail})' if detail else ''), flush=True)


async def run(cmd: list[str], check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors='replace')
    if check and proc.returncode != 0:
        raise Failure(f'{" ".join(cmd)} exited {proc.returncode}: {text.strip()[-300:]}')
    return text


async def new_adapter(before: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = sorted(set(os.listdir('/sys/class/bluetooth')) - before)
        fresh = [a for a in fresh if ':' not in a]   # hciN, not hciN:handle connection entries
        if fresh:
            return fresh[0]
        await asyncio.sleep(0.05)
    raise Failure('no kernel adapter appeared for the /dev/vhci controller')


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--service', required=True, help='lock service UUID')
    parser.add_argument('--lock-command', required=True, help='shell words; {adapter} is replaced')
    parser.add_argument('--timeout', type=float, default=30)
    args = parser.parse_args()

    lock_proc = None
    transport = None
    try:
        before = set(os.listdir('/sys/class/bluetooth'))
        transport = await open_vhci_transport(None)
        link = LocalLink()
        lock_radio = Controller('lock-radio', host_source=transport.source, host_sink=transport.sink,
                                link=link, public_address=LOCK_RADIO)
        adapter = await new_adapter(before, 10)
        ok('vhci-adapter', f'{adapter} is a Bumble controller')

        # A dual-mode controller needs LE enabled through the management interface before the kernel
        # treats it as an LE adapter.
        # The kernel registers the adapter before its setup ends, and the management interface does
        # not know it until then ("Invalid Index"); then it must be powered on through that interface
        # (which also enables LE and registers SMP), before the kernel's auto power-off.
        deadline = time.monotonic() + 15
        while 'addr ' not in await run(['btmgmt', '--index', adapter, 'info'], check=False):
            if time.monotonic() > deadline:
                raise Failure(f'the management interface never listed {adapter}')
            await asyncio.sleep(0.1)
        out = await run(['btmgmt', '--index', adapter, 'power', 'on'])
        if 'powered' not in out:
            raise Failure(f'btmgmt power on {adapter}: {out.strip()}')
        if ' le' not in out.split('settings:')[-1]:
            await run(['btmgmt', '--index', adapter, 'le', 'on'])
        ok('vhci-adapter-up', out.strip().splitlines()[-1])

        command = [w.replace('{adapter}', adapter) for w in shlex.split(args.lock_command)]
        lock_proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT)
        deadline = time.monotonic() + args.timeout
        while True:
            line = await asyncio.wait_for(lock_proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
            if not line:
                state = await run(['hciconfig', adapter])
                raise Failure(f'lock exited before it was ready (status {await lock_proc.wait()}); '
                              f'{" ".join(state.split())}')
            text = line.decode(errors='replace').strip()
            print(f'  lock: {text}', flush=True)
            if text.startswith('ready'):
                break
        ok('lock-ready-on-bumble-adapter')

        phone_radio = Controller('phone-radio', link=link, public_address=PHONE_RADIO)
        device = Device(address=Address(PHONE_RADIO), host=Host(phone_radio, AsyncPipeSink(phone_radio)))
        await device.power_on()
        # Workaround (module doc): after the hosts have set their random addresses, make each
        # controller's random address the *public* address its peer knows it by.
        lock_radio.random_address = Address(LOCK_RADIO, Address.PUBLIC_DEVICE_ADDRESS)
        phone_radio.random_address = Address(PHONE_RADIO, Address.PUBLIC_DEVICE_ADDRESS)

        t0 = time.monotonic()
        connection = await device.connect(Address(LOCK_RADIO, Address.PUBLIC_DEVICE_ADDRESS),
                                          own_address_type=OwnAddressType.PUBLIC, timeout=args.timeout)
        ok('bumble-connect', f'{(time.monotonic() - t0) * 1000:.0f} ms')
        peer = Peer(connection)

        mtu = await peer.request_mtu(517)
        ok('bumble-mtu', f'ATT_MTU {mtu}')

        t0 = time.monotonic()
        services = await peer.discover_services()
        want = UUID(args.service)
        service = next((s for s in services if s.uuid == want), None)
        if service is None:
            raise Failure(f'lock service {want} not among {[str(s.uuid) for s in services]}')
        ok('bumble-discover-service', f'{len(services)} services, {(time.monotonic() - t0) * 1000:.0f} ms')

        characteristics = await service.discover_characteristics()
        if not characteristics:
            raise Failure('the lock service has no characteristics')
        ok('bumble-discover-characteristics', ', '.join(f'{c.uuid}' for c in characteristics))

        readable = [c for c in characteristics if c.properties & 0x02]
        for c in readable:
            value = await c.read_value()
            ok('bumble-read', f'{c.uuid}: {len(value)} bytes')

        notifying = [c for c in characteristics if c.properties & (0x10 | 0x20)]
        if not notifying:
            raise Failure('no characteristic of the lock service notifies or indicates')
        for c in notifying:
            await c.discover_descriptors()
            if c.get_descriptor(UUID.from_16_bits(0x2902)) is None:
                raise Failure(f'{c.uuid} notifies but has no Client Characteristic Configuration descriptor')
            await peer.subscribe(c, lambda value: print(f'  notification: {bytes(value).hex()}', flush=True))
            ok('bumble-subscribe', f'{c.uuid}')

        await connection.disconnect()
        ok('bumble-disconnect')
        return 0
    except Failure as e:
        print(f'FAIL {e}', flush=True)
        return 1
    except Exception as e:   # a peer that crashes must say why, not just exit 1
        print(f'FAIL {type(e).__name__}: {e}', flush=True)
        return 1
    finally:
        if lock_proc and lock_proc.returncode is None:
            lock_proc.terminate()
            try:
                rest, _ = await asyncio.wait_for(lock_proc.communicate(), 5)
                for line in rest.decode(errors='replace').splitlines():
                    print(f'  lock: {line}', flush=True)
            except asyncio.TimeoutError:
                lock_proc.kill()
        if transport:
            await transport.close()


if __name__ == '__main__':
    sys.exit(asyncio.run(main()))
