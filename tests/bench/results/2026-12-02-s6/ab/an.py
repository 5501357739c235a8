import re,statistics as st,collections,sys
d=collections.defaultdict(dict)
for l in open(sys.argv[1]):
    r,lab,out=l.rstrip('\n').split('\t')
    m=re.search(r'req_s=(\d+)',out); d[lab][r]=int(m.group(1))
base=sys.argv[2] if len(sys.argv)>2 else 'rawE'
for lab,v in d.items(): print(lab, st.median(v.values()), sorted(v.values()))
for a in d:
    if a==base: continue
    rs=[d[a][r]/d[base][r] for r in d[base]]
    print(a,'/',base,'paired',round(st.median(rs),3), [round(x,3) for x in rs])
