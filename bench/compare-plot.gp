# bench/compare-plot.gp - chart for bench/compare.py: per workload, one group of bars (one bar
# per runtime), median wall ms on a log-scale y axis.
# Variables (gnuplot -e): datafile (results.dat: header "workload" + one quoted runtime name per
# column, then one row per workload, "-" where a runtime has no value), outfile (PNG path),
# nrt (number of runtime columns), subtitle (optional text).
if (!exists("datafile")) datafile = 'build/peers/results.dat'
if (!exists("outfile")) outfile = 'build/peers/results.png'
if (!exists("nrt")) nrt = 8
if (!exists("subtitle")) subtitle = ''

set terminal pngcairo size 1400,700 font ",10" noenhanced
set output outfile
set title "weft vs peers: wall time per workload (median ms, log scale, lower is better)\n".subtitle
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set yrange [0.1:*]
set ylabel "ms"
set grid ytics mytics
set key outside right top vertical
set xtics nomirror
set format y "%g"
plot for [i=2:nrt+1] datafile using i:xtic(1) title columnheader(i)
