cd /work/main
for dt in fp32 bf16; do
  rm -rf /work/runs/ab-$dt
  scratchpad train --preset heavy-p16-aux2 --data /work/data/mix --out /work/runs/ab-$dt --time-budget 15m \
    --batch-size 8 --seq-len 512 --lr 2e-3 --warmup 200 --threads 2 --compile --dtype $dt --eval-every 1000 \
    --save-every 0 --log-every 100 > /work/runs/ab-$dt.log 2>&1
done
for dt in fp32 bf16; do
  for c in text code; do
    scratchpad eval bpb --model /work/runs/ab-$dt --data /work/data/$c --max-bytes 65536 --threshold inf --threads 2 --out /work/runs/ab-eval-$dt-$c > /work/runs/ab-eval-$dt-$c.log 2>&1
  done
done
echo done > /work/runs/ab.done
