#!/usr/bin/env bash
set -uo pipefail
. /work/main/tools/hil/lib.sh
cd "$HIL_REPO"
PEER=$HIL_REPO/.build/debug/keyway-hil-peer
background btmon sh -c 'exec btmon -w /tmp/hil.btsnoop >/dev/null'
wait_until 10 test -s /tmp/hil.btsnoop
background btvirt btvirt -L -l2
wait_until 15 test -e /sys/class/bluetooth/hci1
wait_until 15 sh -c 'btmgmt --index 0 info | grep -q addr && btmgmt --index 1 info | grep -q addr'
btmgmt --index 0 power on; btmgmt --index 1 power on
hciconfig hci0; hciconfig hci1
A0=$(bdaddr hci0)
background lock $PEER lock --adapter hci0 --security medium
wait_until 30 grep -q '^ready' $HIL_LOGS/lock.log
check central-medium timeout 60 $PEER central --adapter hci1 --to $A0 --round-trips 2 --security medium
cat $HIL_LOGS/central-medium.log
sleep 1; cat $HIL_LOGS/lock.log
echo "--- bumble"
timeout 90 .venv/bin/python tools/hil/bumble_central.py --service B80C0001-1C1F-4153-94CB-D7B58DCACA15 --lock-command "$PEER lock --adapter {adapter} --name BumbleLock"; echo "rc=$?"
hciconfig -a hci2; btmgmt --index 2 info
stop_background
cp /tmp/hil.btsnoop $HIL_OUT/
dmesg > $HIL_OUT/dmesg.log
exit 0
